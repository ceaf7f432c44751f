#pragma once
// A seeded generator that gives the same numbers on every platform: xoshiro256** seeded by
// splitmix64, uniforms from the top bits, normals by Box-Muller (two per draw pair).
#include <cstdint>

#include "rechub/core/tensor.h"

namespace rechub {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  uint64_t next_u64();
  double uniform();  // [0, 1), 53 bits
  double normal();   // mean 0, std 1
  bool bernoulli(double p) { return uniform() < p; }
  uint64_t randint(uint64_t n);  // [0, n), unbiased

  struct State {
    uint64_t s[4];
    bool has_spare;
    double spare;
  };
  State state() const { return {{s_[0], s_[1], s_[2], s_[3]}, has_spare_, spare_}; }
  void set_state(const State& st);

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0;
};

// The process-wide default generator (used when none is passed).
Generator& default_generator();
void manual_seed(uint64_t seed);

Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);  // uniform [0,1)
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opts = {}, Generator* gen = nullptr);
Tensor bernoulli(const Shape& shape, double p, TensorOptions opts = {}, Generator* gen = nullptr);

}  // namespace rechub
