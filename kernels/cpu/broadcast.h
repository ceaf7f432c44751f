#pragma once
// Broadcasting binary ops and the reduction that undoes broadcasting (sum_to), over contiguous
// row-major buffers. Shapes are given already aligned to the output's rank (missing leading
// dims as 1).
#include <cstdint>
#include <vector>

namespace rechub::kernels::cpu {

enum class BinaryOp { add, sub, mul, div };

template <class T>
void broadcast_binary(BinaryOp op, const std::vector<int64_t>& out_shape, const T* a,
                      const std::vector<int64_t>& a_shape, const T* b, const std::vector<int64_t>& b_shape, T* out);

// out (shape `to_shape`, aligned to `from_shape`'s rank) = sum of `in` over the dims where
// to_shape is 1 and from_shape is not.
template <class T>
void sum_to(const T* in, const std::vector<int64_t>& from_shape, T* out, const std::vector<int64_t>& to_shape);

}  // namespace rechub::kernels::cpu
