#pragma once
// The model the checkpoint fuzz target loads into, and its seed files are saved from:
// embeddings in one arena and an MLP with BatchNorm (parameters and buffers).
#include <memory>

#include "rechub/core/rng.h"
#include "rechub/nn/embedding.h"
#include "rechub/nn/mlp.h"
#include "rechub/nn/module.h"

namespace rechub::fuzz {

struct CheckpointNet : nn::Module {
  std::shared_ptr<nn::EmbeddingCollection> embedding;
  std::shared_ptr<nn::MLP> tower;
  CheckpointNet() {
    Generator g(3);
    embedding = register_module("embedding", std::make_shared<nn::EmbeddingCollection>(
                                                 std::vector<nn::EmbeddingSpec>{{"user", 6, 4}, {"item", 5, 4}},
                                                 nn::EmbeddingOptions{.init_std = 0.1, .seed = 3}));
    tower = register_module("tower",
                            std::make_shared<nn::MLP>(nn::MLPOptions{.input_dim = 8, .dims = {4}, .generator = &g}));
  }
  Tensor forward(const Tensor& ids) { return tower->forward(embedding->forward(ids)); }
};

}  // namespace rechub::fuzz
