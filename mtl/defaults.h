#pragma once
// rechub's defaults, defined once. The model configs (MMoEConfig, PLEConfig, ...), trainer::ModelSizes,
// TrainerOptions, LoaderOptions, DataOptions/PreprocessOptions, InferOptions and the `rechub train`
// flags all take their default values from here, so a model built and trained through the C++ API
// with its defaults is the model `rechub train` trains with its defaults, bit for bit
// (tests/mtl/defaults_test.cpp trains both and compares every weight). README "Defaults, and why"
// gives the reason for each value; bench/RESULTS.md "Quality of the defaults" measures them.
//
// The Python package keeps torch-rechub's own defaults where torch-rechub has them (its
// MTLTrainer's n_epoch, optimizer_params), since its users expect torch-rechub's behaviour.
#include <cstdint>
#include <vector>

#include "rechub/mtl/data/vocabulary.h"

namespace rechub::defaults {

// Model sizes.
inline constexpr int64_t embed_dim = 16;  // every sparse feature's embedding width
// Embedding rows start as N(0, std^2), torch-rechub's initialisation.
inline constexpr double embedding_init_std = 1e-4;
inline const std::vector<int64_t> hidden_units{128, 64};  // shared_bottom's bottom, aitm's per-task bottom
inline const std::vector<int64_t> expert_units{128, 64};  // each expert's MLP (mmoe, omoe, ple)
inline constexpr int64_t num_experts = 4;                 // mmoe/omoe; ple: task-specific experts per task and level
inline constexpr int64_t num_shared_experts = 2;          // ple
inline constexpr int64_t num_layers = 2;                  // ple's CGC levels
inline const std::vector<int64_t> tower_units{64, 32};    // each task's tower before its Linear(., 1)
inline constexpr double dropout = 0.0;

// Dense features: (x - mean) / std on the training rows. On the census rows raw capital gains (up to
// 99,999) beside ages left MMoE 0.01-0.02 of test AUC behind (README "Defaults, and why").
inline constexpr data::Normalization normalization = data::Normalization::standard;

// Seed of everything drawn at random: initial weights, dropout masks, the shuffle, the
// validation/test split and the balancers' generator.
inline constexpr uint64_t seed = 1;

// Training.
inline constexpr int64_t epochs = 10;
// Rows per batch. 0: batch_size_for(the training rows), the default.
inline constexpr int64_t batch_size = 0;
// The default batch for a training set of `rows` rows: the largest of 1024, 512 and 256 that gives
// at least 200 optimizer steps per epoch (256 below that). Large data sets get 1024, which keeps the
// GEMMs efficient; small ones get more steps per epoch, so that early stopping judges a model that
// has trained: on the 50k census training rows, 256 (a fixed 1024 left every model 0.002-0.004 of
// income AUC behind the logistic regression; bench/RESULTS.md "Quality of the defaults").
constexpr int64_t batch_size_for(int64_t rows) {
  int64_t b = 1024;
  while (b > 256 && rows / b < 200) b /= 2;
  return b;
}
inline constexpr double lr = 1e-3;  // Adam
inline constexpr double weight_decay = 0.0;
// Learning-rate schedule: halved after every epoch whose validation metric does not improve
// ("plateau", lr_gamma 0.5; constant without validation data). A run that still improves keeps its
// rate; one that stalls continues at half of it. On the MMoE paper's synthetic regression (15 epochs
// of 78 steps) it lowered MMoE's test MSE against a constant rate; on the census validation split it
// changed the AUC by under 0.0005. A fixed halving every 2 epochs ("step") did best on census but cut
// the synthetic regression's training short (bench/RESULTS.md "Quality of the defaults").
inline constexpr const char* lr_schedule = "plateau";
inline constexpr int64_t lr_step_epochs = 1;  // "step" only
inline constexpr double lr_gamma = 0.5;

}  // namespace rechub::defaults
