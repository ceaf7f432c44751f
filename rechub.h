#pragma once
// The whole public API in one include: `#include <rechub/rechub.h>`, link `rechub::rechub`.
// Each header below can also be included on its own (<rechub/mtl/models/mmoe.h>, ...). These are
// the installed headers (cmake/public_headers.cmake); the rest of the source tree is internal.
// Generated data (data::AliCcpSynth, MmoeSynth, ali_ccp_example_data) is a library of its own:
// `#include <rechub/mtl/data/synth/synthetic.h>` and link `rechub::synth`.

// Tensors, autograd, ops and devices; multi-process training's communicator and core hooks.
#include "rechub/core/autograd.h"
#include "rechub/core/device.h"
#include "rechub/core/dist/communicator.h"
#include "rechub/core/dist/sync.h"
#include "rechub/core/dtype.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/core/ops_fused.h"
#include "rechub/core/ops_nn.h"
#include "rechub/core/rng.h"
#include "rechub/core/storage.h"
#include "rechub/core/tensor.h"
#include "rechub/kernels/activation.h"
#include "rechub/kernels/error.h"

// Layers, optimizers, schedules, checkpoints, data parallelism and sharded tables.
#include "rechub/nn/activation.h"
#include "rechub/nn/batchnorm.h"
#include "rechub/nn/checkpoint.h"
#include "rechub/nn/data_parallel.h"
#include "rechub/nn/dropout.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/init.h"
#include "rechub/nn/linear.h"
#include "rechub/nn/lr_scheduler.h"
#include "rechub/nn/mlp.h"
#include "rechub/nn/module.h"
#include "rechub/nn/optim.h"
#include "rechub/nn/safetensors.h"
#include "rechub/nn/sequential.h"
#include "rechub/nn/sharded_embedding.h"

// Data: schemas, CSV files, the cache, preprocessing, datasets and loaders.
#include "rechub/mtl/data/big_buffer.h"
#include "rechub/mtl/data/cache.h"
#include "rechub/mtl/data/column_table.h"
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/dictionary.h"
#include "rechub/mtl/data/infer.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/data/row_range.h"
#include "rechub/mtl/data/schema.h"
#include "rechub/mtl/data/split.h"
#include "rechub/mtl/data/vocabulary.h"

// Models, training, metrics and serving.
#include "rechub/mtl/defaults.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/metrics/gates.h"
#include "rechub/mtl/metrics/metrics.h"
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mlp_list.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/model.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/mtl/trainer/balance.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/report.h"
#include "rechub/mtl/trainer/trainer.h"
