#pragma once
// Dropout: identity in eval; in training, inverted dropout (kept elements scaled by 1 / (1 - p)).
#include <cstdint>

#include "rechub/core/rng.h"
#include "rechub/nn/module.h"

namespace rechub::nn {

class Dropout : public UnaryModule {
 public:
  // The layer owns a Generator seeded with `seed`, so masks repeat run to run.
  explicit Dropout(double p = 0.5, uint64_t seed = 0x5eed);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dropout"; }
  double p() const { return p_; }
  Generator& generator() { return gen_; }

 private:
  double p_;
  Generator gen_;
};

}  // namespace rechub::nn
