# The public headers: what `cmake --install` puts under <prefix>/include/rechub/, with the umbrella
# <rechub/rechub.h> (the repository root's rechub.h) that includes them all; the generated-data
# header comes with rechub::synth and is not in the umbrella. Everything else is internal and never
# installed: the kernels (kernels/cpu, kernels/cuda), core/dispatch.h, core/huge_pages.h,
# core/ops_optim.h, core/cuda.h, core/parallel.h, mtl/models/config_io.h, and the CSV reader's and
# cache's pieces (csv_tokenizer.h, csv_parse.h, input_stream.h, checksum.h). kernels/error.h is
# public because core/error.h re-exports rechub::Error from it, kernels/activation.h because
# core/ops_fused.h names its enum. A public header includes only public
# headers, and the umbrella includes every one: the install test (tests/install) checks both and
# compiles each installed header alone against the install tree.
set(RECHUB_PUBLIC_HEADERS
  # tensors, autograd, ops, devices, the communicator of multi-process training
  core/autograd.h core/device.h core/dtype.h core/error.h core/ops.h core/ops_fused.h core/ops_nn.h
  core/rng.h core/storage.h core/tensor.h core/dist/communicator.h core/dist/sync.h
  kernels/activation.h kernels/error.h
  # layers, optimizers, schedules, checkpoints, data parallelism, sharded tables
  nn/activation.h nn/batchnorm.h nn/checkpoint.h nn/data_parallel.h nn/dropout.h nn/embedding.h nn/init.h
  nn/linear.h nn/lr_scheduler.h nn/mlp.h nn/module.h nn/optim.h nn/safetensors.h nn/sequential.h
  nn/sharded_embedding.h
  # data: schemas, CSV files, the cache, preprocessing, datasets and loaders
  mtl/data/big_buffer.h mtl/data/cache.h mtl/data/column_table.h mtl/data/csv.h mtl/data/dataset.h
  mtl/data/dictionary.h mtl/data/infer.h mtl/data/load.h mtl/data/loader.h mtl/data/preprocessor.h
  mtl/data/row_range.h mtl/data/schema.h mtl/data/split.h mtl/data/vocabulary.h
  # models, training, metrics, serving; the defaults they share
  mtl/defaults.h
  mtl/metrics/evaluate.h mtl/metrics/gates.h mtl/metrics/metrics.h
  mtl/models/aitm.h mtl/models/esmm.h mtl/models/mlp_list.h mtl/models/mmoe.h mtl/models/model.h
  mtl/models/ple.h mtl/models/shared_bottom.h
  mtl/predictor/predictor.h
  mtl/trainer/balance.h mtl/trainer/model_builder.h mtl/trainer/report.h mtl/trainer/trainer.h)
# rechub::synth (mtl/data/synth): the generated data of the tutorials, tests and `rechub synth`.
set(RECHUB_SYNTH_PUBLIC_HEADERS mtl/data/synth/synthetic.h)
