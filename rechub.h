#pragma once
// The whole public API in one include: `#include <rechub/rechub.h>`, link `rechub::rechub`.
// Each header below can also be included on its own (<rechub/mtl/models/mmoe.h>, ...).
// Generated data (data::AliCcpSynth, MmoeSynth, ali_ccp_example_data) is a library of its own:
// `#include <rechub/mtl/data/synth/synthetic.h>` and link `rechub::synth`.

// Tensors, autograd and ops.
#include "rechub/core/autograd.h"
#include "rechub/core/device.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"
#include "rechub/core/tensor.h"

// Layers, optimizers, schedules and checkpoints.
#include "rechub/nn/activation.h"
#include "rechub/nn/batchnorm.h"
#include "rechub/nn/checkpoint.h"
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

// Data: schemas, CSV files, preprocessing, loaders.
#include "rechub/mtl/data/csv.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/infer.h"
#include "rechub/mtl/data/load.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/data/schema.h"

// Models, training, metrics and serving.
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/metrics/metrics.h"
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/model.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/mtl/trainer/balance.h"
#include "rechub/mtl/trainer/model_builder.h"
#include "rechub/mtl/trainer/trainer.h"
