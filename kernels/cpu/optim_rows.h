#pragma once
// Row-sparse optimizer updates in registers, for the embedding tables: rows idx[lo..hi) of a float
// table of width n, the gradient row k at g + k * n. Dispatched on active_isa() (kernels/cpu/isa.h):
// AVX-512 (n a multiple of 16) or AVX2 (n a multiple of 8). They return false where neither applies
// (generic set, or n not a multiple of the vector width) and the caller runs its portable loop.
// The operations of the portable loops (PyTorch's SparseAdam / Adagrad) in the same order, with the
// correctly rounded vector sqrt and division (the compiler may fuse a multiply and an add, as it may in
// the portable loops, so results agree to float rounding, not always bit for bit).
#include <cstdint>

#include "rechub/kernels/cpu/isa.h"

namespace rechub::kernels::cpu {

struct SparseAdamCoef {
  float omb1, omb2, eps, step_size, wd, decay;  // 1 - beta1, 1 - beta2, eps, lr / bc1, L2 or decay factor
  bool has_wd, decoupled;                       // weight decay on; AdamW's decoupled form
};

// m += (1-b1)(g - m); v += (1-b2)(g^2 - v); p -= step_size * m / (sqrt(v) + eps); with L2 (g += wd p)
// or decoupled decay (p *= decay) first.
bool sparse_adam_rows(Isa isa, float* p, float* m, float* v, const float* g, const int64_t* idx, int64_t lo, int64_t hi,
                      int64_t n, const SparseAdamCoef& c);

// sum += g^2; p -= clr * g / (sqrt(sum) + eps); with L2 (g += wd p) first.
bool sparse_adagrad_rows(Isa isa, float* p, float* sum, const float* g, const int64_t* idx, int64_t lo, int64_t hi,
                         int64_t n, float clr, float eps, float wd, bool has_wd);

}  // namespace rechub::kernels::cpu
