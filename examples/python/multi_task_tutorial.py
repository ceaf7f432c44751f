"""torch-rechub's multi-task tutorial (examples/ranking/run_ali_ccp_multi_task.py) on rechub.

The port changes the imports (torch_rechub -> rechub) and two things rechub does differently:
  - ESMM takes the two labels (click, purchase) and predicts [pCTR, pCTCVR]; torch-rechub's
    three-label form [cvr, ctr, ctcvr] is not taken (marked "rechub:" below);
  - torch.manual_seed(seed) becomes the models' seed argument and the loader's seed.
Everything else is the tutorial's code.

    python3 examples/python/multi_task_tutorial.py --model_name MMOE
    python3 examples/python/multi_task_tutorial.py --model_name all --data synthetic --rows 100000 --epoch 3

--data sample (default) reads the tutorial's Ali-CCP samples (examples/data/ali-ccp: 100/50/50 rows,
too few for a meaningful AUC); --data synthetic generates Ali-CCP-shaped rows with a planted signal
(the generator of `rechub synth`), where the test AUCs show what was learnt.
"""
import logging
import os
import sys

import pandas as pd

from rechub.basic.features import DenseFeature, SparseFeature
from rechub.models.multi_task import AITM, ESMM, MMOE, PLE, SharedBottom
from rechub.trainers import MTLTrainer
from rechub.utils.data import DataGenerator, ali_ccp_synthetic

HERE = os.path.dirname(os.path.abspath(__file__))


def synthetic_frames(rows, seed):
    """train/val/test DataFrames shaped like the tutorial's samples (click, purchase, ids, dense)."""
    n_val = n_test = rows // 10
    n_train = rows - n_val - n_test
    frames = []
    for first, n in ((0, n_train), (n_train, n_val), (n_train + n_val, n_test)):
        x, y = ali_ccp_synthetic(n, seed=seed, first_row=first)
        df = pd.DataFrame(x)
        df.insert(0, "click", y[:, 0].astype(int))
        df.insert(1, "purchase", y[:, 1].astype(int))
        frames.append(df)
    return frames


def get_ali_ccp_data_dict(model_name, data, rows, seed, data_path=os.path.join(HERE, "..", "data", "ali-ccp")):
    if data == "sample":
        df_train = pd.read_csv(data_path + '/ali_ccp_train_sample.csv')
        df_val = pd.read_csv(data_path + '/ali_ccp_val_sample.csv')
        df_test = pd.read_csv(data_path + '/ali_ccp_test_sample.csv')
        dense_cols = ['D109_14', 'D110_14', 'D127_14', 'D150_14', 'D508', 'D509', 'D702', 'D853']
        item_cols = ['129', '205', '206', '207', '210', '216']  #assumption features split for user and item
    else:
        df_train, df_val, df_test = synthetic_frames(rows, seed)
        dense_cols = [c for c in df_train.columns if c.startswith("D")]
        item_cols = ['205', '216', '206', '301']  # the generator's item-side fields
    print("train : val : test = %d %d %d" % (len(df_train), len(df_val), len(df_test)))
    train_idx, val_idx = df_train.shape[0], df_train.shape[0] + df_val.shape[0]
    data = pd.concat([df_train, df_val, df_test], axis=0)
    #task 1 (as cvr): main task, purchase prediction
    #task 2(as ctr): auxiliary task, click prediction
    data.rename(columns={'purchase': 'cvr_label', 'click': 'ctr_label'}, inplace=True)
    data["ctcvr_label"] = data['cvr_label'] * data['ctr_label']

    col_names = data.columns.values.tolist()
    sparse_cols = [col for col in col_names if col not in dense_cols and col not in ['cvr_label', 'ctr_label', 'ctcvr_label']]
    print("sparse cols:%d dense cols:%d" % (len(sparse_cols), len(dense_cols)))
    #define dense and sparse features
    if model_name == "ESMM":
        label_cols = ['ctr_label', 'cvr_label']  # rechub: ESMM's labels are (click, purchase)
        #ESMM only for sparse features in origin paper
        user_cols = [col for col in sparse_cols if col not in item_cols]
        user_features = [SparseFeature(col, data[col].max() + 1, embed_dim=16) for col in user_cols]
        item_features = [SparseFeature(col, data[col].max() + 1, embed_dim=16) for col in item_cols]
        x_train, y_train = {name: data[name].values[:train_idx] for name in sparse_cols}, data[label_cols].values[:train_idx]
        x_val, y_val = {name: data[name].values[train_idx:val_idx] for name in sparse_cols}, data[label_cols].values[train_idx:val_idx]
        x_test, y_test = {name: data[name].values[val_idx:] for name in sparse_cols}, data[label_cols].values[val_idx:]
        return user_features, item_features, x_train, y_train, x_val, y_val, x_test, y_test
    else:
        label_cols = ['cvr_label', 'ctr_label']  #the order of labels can be any
        used_cols = sparse_cols + dense_cols
        features = [SparseFeature(col, data[col].max()+1, embed_dim=4)for col in sparse_cols] \
                   + [DenseFeature(col) for col in dense_cols]
        x_train, y_train = {name: data[name].values[:train_idx] for name in used_cols}, data[label_cols].values[:train_idx]
        x_val, y_val = {name: data[name].values[train_idx:val_idx] for name in used_cols}, data[label_cols].values[train_idx:val_idx]
        x_test, y_test = {name: data[name].values[val_idx:] for name in used_cols}, data[label_cols].values[val_idx:]
        return features, x_train, y_train, x_val, y_val, x_test, y_test


def main(model_name, epoch, learning_rate, batch_size, weight_decay, device, save_dir, seed, data, rows):
    # rechub: no torch.manual_seed; the models and the loader take the seed.
    if model_name == "SharedBottom":
        features, x_train, y_train, x_val, y_val, x_test, y_test = get_ali_ccp_data_dict(model_name, data, rows, seed)
        task_types = ["classification", "classification"]
        model = SharedBottom(features, task_types, bottom_params={"dims": [117]}, tower_params_list=[{"dims": [8]}, {"dims": [8]}], seed=seed)
    elif model_name == "ESMM":
        user_features, item_features, x_train, y_train, x_val, y_val, x_test, y_test = get_ali_ccp_data_dict(model_name, data, rows, seed)
        task_types = ["classification", "classification"]  # rechub: ctr, ctcvr
        model = ESMM(user_features, item_features, cvr_params={"dims": [16, 8]}, ctr_params={"dims": [16, 8]}, seed=seed)
    elif model_name == "MMOE":
        features, x_train, y_train, x_val, y_val, x_test, y_test = get_ali_ccp_data_dict(model_name, data, rows, seed)
        task_types = ["classification", "classification"]
        model = MMOE(features, task_types, 8, expert_params={"dims": [16]}, tower_params_list=[{"dims": [8]}, {"dims": [8]}], seed=seed)
    elif model_name == "PLE":
        features, x_train, y_train, x_val, y_val, x_test, y_test = get_ali_ccp_data_dict(model_name, data, rows, seed)
        task_types = ["classification", "classification"]
        model = PLE(features, task_types, n_level=1, n_expert_specific=2, n_expert_shared=1, expert_params={"dims": [16]}, tower_params_list=[{"dims": [8]}, {"dims": [8]}], seed=seed)
    elif model_name == "AITM":
        task_types = ["classification", "classification"]
        features, x_train, y_train, x_val, y_val, x_test, y_test = get_ali_ccp_data_dict(model_name, data, rows, seed)
        model = AITM(features, 2, bottom_params={"dims": [32, 16]}, tower_params_list=[{"dims": [8]}, {"dims": [8]}], seed=seed)

    dg = DataGenerator(x_train, y_train)
    train_dataloader, val_dataloader, test_dataloader = dg.generate_dataloader(x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, batch_size=batch_size, seed=seed)

    #adaptive weight loss:
    #mtl_trainer = MTLTrainer(model, task_types=task_types, optimizer_params={"lr": learning_rate, "weight_decay": weight_decay}, adaptive_params={"method": "uwl"}, n_epoch=epoch, earlystop_patience=10, device=device, model_path=save_dir)

    mtl_trainer = MTLTrainer(model, task_types=task_types, optimizer_params={"lr": learning_rate, "weight_decay": weight_decay}, n_epoch=epoch, earlystop_patience=30, device=device, model_path=save_dir)
    mtl_trainer.fit(train_dataloader, val_dataloader)
    auc = mtl_trainer.evaluate(mtl_trainer.model, test_dataloader)
    print(f'test auc: {auc}')
    return auc


if __name__ == '__main__':
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('--model_name', default='SharedBottom', help="SharedBottom, ESMM, MMOE, PLE, AITM or all")
    parser.add_argument('--epoch', type=int, default=1)
    parser.add_argument('--learning_rate', type=float, default=1e-3)
    parser.add_argument('--batch_size', type=int, default=1024)
    parser.add_argument('--weight_decay', type=float, default=1e-4)
    parser.add_argument('--device', default='cpu')  #cuda:0
    parser.add_argument('--save_dir', default='./')
    parser.add_argument('--seed', type=int, default=2022)
    parser.add_argument('--data', choices=['sample', 'synthetic'], default='sample')
    parser.add_argument('--rows', type=int, default=100000, help="rows of --data synthetic (80/10/10 split)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    names = ["SharedBottom", "ESMM", "MMOE", "PLE", "AITM"] if args.model_name == "all" else [args.model_name]
    for name in names:
        save_dir = os.path.join(args.save_dir, name) if len(names) > 1 else args.save_dir
        os.makedirs(save_dir, exist_ok=True)
        main(name, args.epoch, args.learning_rate, args.batch_size, args.weight_decay, args.device, save_dir,
             args.seed, args.data, args.rows)
    sys.exit(0)
"""
python3 multi_task_tutorial.py --model_name SharedBottom
python3 multi_task_tutorial.py --model_name ESMM
python3 multi_task_tutorial.py --model_name MMOE
python3 multi_task_tutorial.py --model_name PLE
python3 multi_task_tutorial.py --model_name AITM
"""
