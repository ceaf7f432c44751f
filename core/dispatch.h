#pragma once
// Internal helpers of the op front-ends: input checks and dtype dispatch.
#include <initializer_list>

#include "rechub/core/tensor.h"
#include "rechub/kernels/cuda/ops.h"  // declarations only: no CUDA headers
#include "rechub/kernels/cuda/runtime.h"

namespace rechub::detail {

// Runs `body` with scalar_t = float or double according to `dt`; other dtypes are an error.
#define RECHUB_FLOAT_DISPATCH(dt, op, ...)                                                                    \
  switch (dt) {                                                                                               \
    case ::rechub::DType::f32: {                                                                              \
      using scalar_t = float;                                                                                 \
      __VA_ARGS__;                                                                                            \
      break;                                                                                                  \
    }                                                                                                         \
    case ::rechub::DType::f64: {                                                                              \
      using scalar_t = double;                                                                                \
      __VA_ARGS__;                                                                                            \
      break;                                                                                                  \
    }                                                                                                         \
    default:                                                                                                  \
      RECHUB_FAIL(op << ": expected a floating-point tensor (f32 or f64), got " << ::rechub::dtype_name(dt)); \
  }

// Runs CUDA_CALL when `t` lives on a CUDA device (made current first), else the CPU statements.
// Without the CUDA backend no tensor can live on a device, and the CUDA call is not compiled.
#ifdef RECHUB_WITH_CUDA
#define RECHUB_DEVICE_SWITCH(t, CUDA_CALL, ...)     \
  if ((t).device().is_cuda()) {                     \
    ::rechub::cuda::use_device((t).device().index); \
    CUDA_CALL;                                      \
  } else {                                          \
    __VA_ARGS__;                                    \
  }
#else
#define RECHUB_DEVICE_SWITCH(t, CUDA_CALL, ...) \
  { __VA_ARGS__; }
#endif

// A tensor's data as the kernels take it, or null for an undefined tensor (an optional operand).
template <class T>
const T* cptr(const Tensor& t) {
  return t.defined() ? t.template data<T>() : nullptr;
}
template <class T>
T* mptr(Tensor t) {
  return t.defined() ? t.template data<T>() : nullptr;
}

// Every tensor defined, dense, floating point, of one dtype and on one device; on a CUDA device f32 only.
void check_float_operands(const char* op, std::initializer_list<const Tensor*> ts);
void check_defined(const char* op, const Tensor& t, const char* arg);
// Integer index tensor (i32 or i64) on the CPU or a CUDA device; returns it as i64.
Tensor index_as_i64(const char* op, const Tensor& idx);
// Normalises a possibly negative dim for a tensor of rank `rank`.
int64_t wrap_dim(const char* op, int64_t dim, int64_t rank);
// [outer, n, inner] around `dim`.
void split_dims(const Shape& s, int64_t dim, int64_t& outer, int64_t& n, int64_t& inner);

}  // namespace rechub::detail
