// Reductions, softmax and norms.
#include <cmath>

#include "rechub/core/dispatch.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/cpu/reduce.h"
#include "rechub/kernels/cpu/softmax.h"

namespace rechub::ops {
using detail::check_float_operands;
using detail::split_dims;
using detail::wrap_dim;

static Shape reduced_shape(const Shape& s, int64_t dim, bool keepdim) {
  Shape r = s;
  if (keepdim)
    r[dim] = 1;
  else
    r.erase(r.begin() + dim);
  return r;
}

// Expands g (reduced over `dim`) back to `shape` by repetition along dim.
static Tensor expand_along(const Tensor& g, const Shape& shape, int64_t dim) {
  Shape ks = shape;
  ks[dim] = 1;
  return add(zeros(shape, {.dtype = g.dtype(), .device = g.device()}), reshape(g, ks));
}

Tensor sum(const Tensor& a) {
  check_float_operands("sum", {&a});
  Tensor out = empty({}, {.dtype = a.dtype(), .device = a.device()});
  RECHUB_DEVICE_SWITCH(a, kernels::cuda::sum_all(a.data<float>(), a.numel(), out.data<float>()),
                       RECHUB_FLOAT_DISPATCH(a.dtype(), "sum",
                                             out.data<scalar_t>()[0] = static_cast<scalar_t>(
                                                 kernels::cpu::sum_all(a.data<scalar_t>(), a.numel()))));
  return record(out, "sum", {a}, [s = a.shape()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{add(zeros(s, {.dtype = g.dtype(), .device = g.device()}), g)};
  });
}

Tensor sum(const Tensor& a, int64_t dim, bool keepdim) {
  check_float_operands("sum", {&a});
  dim = wrap_dim("sum", dim, a.dim());
  int64_t outer, n, inner;
  split_dims(a.shape(), dim, outer, n, inner);
  Tensor out = empty(reduced_shape(a.shape(), dim, keepdim), {.dtype = a.dtype(), .device = a.device()});
  RECHUB_DEVICE_SWITCH(
      a, kernels::cuda::sum_dim(a.data<float>(), outer, n, inner, out.data<float>()),
      RECHUB_FLOAT_DISPATCH(a.dtype(), "sum",
                            kernels::cpu::sum_dim(a.data<scalar_t>(), outer, n, inner, out.data<scalar_t>())));
  return record(out, "sum_dim", {a}, [s = a.shape(), dim](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{expand_along(g, s, dim)};
  });
}

Tensor mean(const Tensor& a) {
  RECHUB_CHECK(a.defined() && a.numel() > 0, "mean of an empty tensor");
  return mul(sum(a), 1.0 / static_cast<double>(a.numel()));
}

Tensor mean(const Tensor& a, int64_t dim, bool keepdim) {
  check_float_operands("mean", {&a});
  const int64_t d = wrap_dim("mean", dim, a.dim());
  RECHUB_CHECK(a.size(d) > 0, "mean over an empty dimension " << d << " of " << shape_str(a.shape()));
  return mul(sum(a, d, keepdim), 1.0 / static_cast<double>(a.size(d)));
}

Tensor max(const Tensor& a) {
  check_float_operands("max", {&a});
  RECHUB_CHECK(a.numel() > 0, "max of an empty tensor");
  return max(reshape(a, {a.numel()}), 0, false);
}

static Tensor max_impl(const Tensor& a, int64_t dim, bool keepdim, Tensor* arg) {
  check_float_operands("max", {&a});
  dim = wrap_dim("max", dim, a.dim());
  RECHUB_CHECK(a.size(dim) > 0, "max over an empty dimension " << dim << " of " << shape_str(a.shape()));
  int64_t outer, n, inner;
  split_dims(a.shape(), dim, outer, n, inner);
  const Shape rs = reduced_shape(a.shape(), dim, keepdim);
  Tensor out = empty(rs, {.dtype = a.dtype(), .device = a.device()});
  Tensor idx = empty(rs, {.dtype = DType::i64, .device = a.device()});
  RECHUB_DEVICE_SWITCH(
      a, kernels::cuda::max_dim(a.data<float>(), outer, n, inner, out.data<float>(), idx.data<int64_t>()),
      RECHUB_FLOAT_DISPATCH(
          a.dtype(), "max",
          kernels::cpu::max_dim(a.data<scalar_t>(), outer, n, inner, out.data<scalar_t>(), idx.data<int64_t>())));
  if (arg) *arg = idx;
  return record(out, "max_dim", {a}, [s = a.shape(), idx, outer, n, inner](const Tensor& g, const std::vector<bool>&) {
    Tensor gx = zeros(s, {.dtype = g.dtype(), .device = g.device()});
    const int64_t* pi = idx.data<int64_t>();
    RECHUB_DEVICE_SWITCH(g, kernels::cuda::max_dim_backward(g.data<float>(), pi, outer, n, inner, gx.data<float>()),
                         RECHUB_FLOAT_DISPATCH(g.dtype(), "max backward", {
                           const scalar_t* pg = g.data<scalar_t>();
                           scalar_t* px = gx.data<scalar_t>();
                           for (int64_t o = 0; o < outer; ++o)
                             for (int64_t j = 0; j < inner; ++j)
                               px[(o * n + pi[o * inner + j]) * inner + j] = pg[o * inner + j];
                         }));
    return std::vector<Tensor>{gx};
  });
}

Tensor max(const Tensor& a, int64_t dim, bool keepdim) { return max_impl(a, dim, keepdim, nullptr); }

Tensor argmax(const Tensor& a, int64_t dim) {
  NoGradGuard ng;
  Tensor idx;
  max_impl(a, dim, false, &idx);
  return idx;
}

Tensor norm(const Tensor& a, double p) {
  check_float_operands("norm", {&a});
  if (p == 2.0) {
    // sqrt(sum x^2); its gradient x / norm is 0/0 at x = 0, where we return 0 like PyTorch.
    Tensor out = empty({}, {.dtype = a.dtype(), .device = a.device()});
    RECHUB_DEVICE_SWITCH(
        a,
        {
          kernels::cuda::sum_all(a.data<float>(), a.numel(), out.data<float>(), /*square=*/true);
          kernels::cuda::unary_forward(kernels::cuda::Unary::sqrt, 1, out.data<float>(), out.data<float>());
        },
        RECHUB_FLOAT_DISPATCH(a.dtype(), "norm", {
          const scalar_t* x = a.data<scalar_t>();
          double s = 0;
          for (int64_t i = 0; i < a.numel(); ++i) s += static_cast<double>(x[i]) * x[i];
          out.data<scalar_t>()[0] = static_cast<scalar_t>(std::sqrt(s));
        }));
    return record(out, "norm2", {a}, [x = a.detach(), nrm = out.item()](const Tensor& g, const std::vector<bool>&) {
      if (nrm == 0) return std::vector<Tensor>{zeros_like(x)};
      return std::vector<Tensor>{mul(x, reshape(g, {1}) / nrm)};
    });
  }
  RECHUB_CHECK(p == 1.0, "norm: p must be 1 or 2, got " << p);
  return sum(abs(a));
}

Tensor softmax(const Tensor& a, int64_t dim) {
  check_float_operands("softmax", {&a});
  dim = wrap_dim("softmax", dim, a.dim());
  int64_t outer, n, inner;
  split_dims(a.shape(), dim, outer, n, inner);
  Tensor out = empty(a.shape(), {.dtype = a.dtype(), .device = a.device()});
  RECHUB_DEVICE_SWITCH(a, kernels::cuda::softmax_forward(a.data<float>(), outer, n, inner, out.data<float>(), false),
                       RECHUB_FLOAT_DISPATCH(a.dtype(), "softmax",
                                             kernels::cpu::softmax_forward(a.data<scalar_t>(), outer, n, inner,
                                                                           out.data<scalar_t>(), false)));
  return record(out, "softmax", {a}, [y = out.detach(), outer, n, inner](const Tensor& g, const std::vector<bool>&) {
    Tensor gx = empty(y.shape(), {.dtype = y.dtype(), .device = y.device()});
    RECHUB_DEVICE_SWITCH(
        y, kernels::cuda::softmax_backward(y.data<float>(), g.data<float>(), outer, n, inner, gx.data<float>(), false),
        RECHUB_FLOAT_DISPATCH(y.dtype(), "softmax backward",
                              kernels::cpu::softmax_backward(y.data<scalar_t>(), g.data<scalar_t>(), outer, n, inner,
                                                             gx.data<scalar_t>(), false)));
    return std::vector<Tensor>{gx};
  });
}

Tensor log_softmax(const Tensor& a, int64_t dim) {
  check_float_operands("log_softmax", {&a});
  dim = wrap_dim("log_softmax", dim, a.dim());
  int64_t outer, n, inner;
  split_dims(a.shape(), dim, outer, n, inner);
  Tensor out = empty(a.shape(), {.dtype = a.dtype(), .device = a.device()});
  RECHUB_DEVICE_SWITCH(a, kernels::cuda::softmax_forward(a.data<float>(), outer, n, inner, out.data<float>(), true),
                       RECHUB_FLOAT_DISPATCH(a.dtype(), "log_softmax",
                                             kernels::cpu::softmax_forward(a.data<scalar_t>(), outer, n, inner,
                                                                           out.data<scalar_t>(), true)));
  return record(
      out, "log_softmax", {a}, [y = out.detach(), outer, n, inner](const Tensor& g, const std::vector<bool>&) {
        Tensor gx = empty(y.shape(), {.dtype = y.dtype(), .device = y.device()});
        RECHUB_DEVICE_SWITCH(
            y,
            kernels::cuda::softmax_backward(y.data<float>(), g.data<float>(), outer, n, inner, gx.data<float>(), true),
            RECHUB_FLOAT_DISPATCH(y.dtype(), "log_softmax backward",
                                  kernels::cpu::softmax_backward(y.data<scalar_t>(), g.data<scalar_t>(), outer, n,
                                                                 inner, gx.data<scalar_t>(), true)));
        return std::vector<Tensor>{gx};
      });
}

}  // namespace rechub::ops
