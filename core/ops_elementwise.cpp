// Elementwise ops and activations: forward kernels in kernels/cpu, backward beside each forward.
#include <cmath>
#include <limits>

#include "rechub/core/dispatch.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/cpu/broadcast.h"
#include "rechub/kernels/cpu/parallel.h"

namespace rechub {
namespace detail {

void check_defined(const char* op, const Tensor& t, const char* arg) {
  RECHUB_CHECK(t.defined(), op << ": argument '" << arg << "' is an undefined tensor");
}

void check_float_operands(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    RECHUB_CHECK(t->defined(), op << ": an input is an undefined tensor");
    RECHUB_CHECK(!t->is_sparse(), op << ": row-sparse tensors are not accepted (call to_dense() first)");
    RECHUB_CHECK(is_floating(t->dtype()),
                 op << ": expected a floating-point tensor (f32 or f64), got " << dtype_name(t->dtype()));
    if (!first) first = t;
    RECHUB_CHECK(t->device() == first->device(), op << ": inputs are on different devices (" << first->device().str()
                                                    << " and " << t->device().str() << "); move them with to()");
    RECHUB_CHECK(t->dtype() == first->dtype(), op << ": inputs have different dtypes (" << dtype_name(first->dtype())
                                                  << " and " << dtype_name(t->dtype()) << "); convert with to()");
    RECHUB_CHECK(t->device().is_cpu() || t->dtype() == DType::f32, op << ": the CUDA backend computes in f32, got an "
                                                                      << dtype_name(t->dtype()) << " tensor on "
                                                                      << t->device().str());
  }
}

Tensor index_as_i64(const char* op, const Tensor& idx) {
  RECHUB_CHECK(idx.defined(), op << ": index is an undefined tensor");
  RECHUB_CHECK(idx.dtype() == DType::i64 || idx.dtype() == DType::i32,
               op << ": index must be an integer tensor (i32 or i64), got " << dtype_name(idx.dtype()));
  return idx.dtype() == DType::i64 ? idx : idx.to(DType::i64);
}

int64_t wrap_dim(const char* op, int64_t dim, int64_t rank) {
  RECHUB_CHECK(dim >= -rank && dim < rank, op << ": dim " << dim << " is out of range for a tensor of rank " << rank);
  return dim < 0 ? dim + rank : dim;
}

void split_dims(const Shape& s, int64_t dim, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= s[i];
  n = s[dim];
  for (size_t i = dim + 1; i < s.size(); ++i) inner *= s[i];
}

}  // namespace detail

namespace ops {
using detail::check_float_operands;

Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    RECHUB_CHECK(da == db || da == 1 || db == 1, op << ": shapes " << shape_str(a) << " and " << shape_str(b)
                                                    << " cannot be broadcast (dimension " << i << ": " << da << " vs "
                                                    << db << ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

static Shape aligned(const Shape& s, size_t rank) {
  Shape r(rank - s.size(), 1);
  r.insert(r.end(), s.begin(), s.end());
  return r;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  check_float_operands("sum_to", {&g});
  RECHUB_CHECK(shape.size() <= g.shape().size(),
               "sum_to: cannot reduce " << shape_str(g.shape()) << " to " << shape_str(shape));
  Tensor out = empty(shape, {.dtype = g.dtype(), .device = g.device()});
  RECHUB_DEVICE_SWITCH(g, kernels::cuda::sum_to(g.data<float>(), g.shape(), out.data<float>(), aligned(shape, g.dim())),
                       RECHUB_FLOAT_DISPATCH(g.dtype(), "sum_to",
                                             kernels::cpu::sum_to(g.data<scalar_t>(), g.shape(), out.data<scalar_t>(),
                                                                  aligned(shape, g.dim()))));
  return out;
}

static Tensor binary_raw(kernels::cpu::BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_float_operands(name, {&a, &b});
  const Shape os = broadcast_shape(a.shape(), b.shape(), name);
  Tensor out = empty(os, {.dtype = a.dtype(), .device = a.device()});
  RECHUB_DEVICE_SWITCH(
      a,
      kernels::cuda::broadcast_binary(op, os, a.data<float>(), aligned(a.shape(), os.size()), b.data<float>(),
                                      aligned(b.shape(), os.size()), out.data<float>()),
      RECHUB_FLOAT_DISPATCH(
          a.dtype(), name,
          kernels::cpu::broadcast_binary(op, os, a.data<scalar_t>(), aligned(a.shape(), os.size()), b.data<scalar_t>(),
                                         aligned(b.shape(), os.size()), out.data<scalar_t>())));
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(kernels::cpu::BinaryOp::add, "add", a, b);
  return record(out, "add", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, const std::vector<bool>& n) {
    return std::vector<Tensor>{n[0] ? sum_to(g, sa) : Tensor(), n[1] ? sum_to(g, sb) : Tensor()};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(kernels::cpu::BinaryOp::sub, "sub", a, b);
  return record(out, "sub", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g, const std::vector<bool>& n) {
    return std::vector<Tensor>{n[0] ? sum_to(g, sa) : Tensor(), n[1] ? sum_to(neg(g), sb) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(kernels::cpu::BinaryOp::mul, "mul", a, b);
  return record(out, "mul", {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g, const std::vector<bool>& n) {
    return std::vector<Tensor>{n[0] ? sum_to(mul(g, b), a.shape()) : Tensor(),
                               n[1] ? sum_to(mul(g, a), b.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(kernels::cpu::BinaryOp::div, "div", a, b);
  return record(out, "div", {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g, const std::vector<bool>& n) {
    Tensor ga, gb;
    if (n[0]) ga = sum_to(div(g, b), a.shape());
    if (n[1]) gb = sum_to(neg(div(mul(g, a), mul(b, b))), b.shape());  // d(a/b)/db = -a/b^2
    return std::vector<Tensor>{ga, gb};
  });
}

using CudaUnary = kernels::cuda::Unary;

// Elementwise unary op: out = f(a) on the CPU, the kernel `cu` (with parameters p0, p1) on CUDA.
template <class F>
static Tensor unary_raw(const char* name, const Tensor& a, F f, CudaUnary cu, double p0 = 0, double p1 = 0) {
  check_float_operands(name, {&a});
  Tensor out = empty(a.shape(), {.dtype = a.dtype(), .device = a.device()});
  RECHUB_DEVICE_SWITCH(
      a, kernels::cuda::unary_forward(cu, a.numel(), a.data<float>(), out.data<float>(), p0, p1),
      RECHUB_FLOAT_DISPATCH(a.dtype(), name,
                            kernels::cpu::unary_map(a.numel(), a.data<scalar_t>(), out.data<scalar_t>(),
                                                    [&](scalar_t x) { return static_cast<scalar_t>(f(x)); })));
  (void)p0, (void)p1, (void)cu;
  return out;
}

// grad = g * d(x) where d is evaluated elementwise on (x, y); on CUDA the derivative of `cu`.
template <class D>
static Tensor unary_grad(const Tensor& g, const Tensor& x, const Tensor& y, D d, CudaUnary cu, double p0 = 0,
                         double p1 = 0) {
  Tensor out = empty(g.shape(), {.dtype = g.dtype(), .device = g.device()});
  const int64_t n = g.numel();
  (void)p0, (void)p1, (void)cu;
#ifdef RECHUB_WITH_CUDA
  if (g.device().is_cuda()) {
    cuda::use_device(g.device().index);
    kernels::cuda::unary_backward(cu, n, g.data<float>(), x.defined() ? x.data<float>() : nullptr,
                                  y.defined() ? y.data<float>() : nullptr, out.data<float>(), p0, p1);
    return out;
  }
#endif
  RECHUB_FLOAT_DISPATCH(g.dtype(), "backward", {
    const scalar_t* pg = g.data<scalar_t>();
    const scalar_t* px = x.defined() ? x.data<scalar_t>() : nullptr;
    const scalar_t* py = y.defined() ? y.data<scalar_t>() : nullptr;
    scalar_t* po = out.data<scalar_t>();
    kernels::cpu::parallel_for(n, kernels::cpu::kParallelGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        po[i] = pg[i] * static_cast<scalar_t>(d(px ? px[i] : scalar_t(0), py ? py[i] : scalar_t(0)));
    });
  });
  return out;
}

#define RECHUB_UNARY(NAME, FWD, DERIV, NEED_X, NEED_Y)                                        \
  Tensor NAME(const Tensor& a) {                                                              \
    Tensor out = unary_raw(                                                                   \
        #NAME, a, [](auto x) { return FWD; }, CudaUnary::NAME);                               \
    return record(out, #NAME, {a},                                                            \
                  [x = NEED_X ? a.detach() : Tensor(), y = NEED_Y ? out.detach() : Tensor()]( \
                      const Tensor& g, const std::vector<bool>&) {                            \
                    return std::vector<Tensor>{unary_grad(                                    \
                        g, x, y,                                                              \
                        [](auto x, auto y) {                                                  \
                          (void)x;                                                            \
                          (void)y;                                                            \
                          return DERIV;                                                       \
                        },                                                                    \
                        CudaUnary::NAME)};                                                    \
                  });                                                                         \
  }

RECHUB_UNARY(neg, -x, -1.0, false, false)
RECHUB_UNARY(exp, std::exp(x), y, false, true)
RECHUB_UNARY(log, std::log(x), 1.0 / x, true, false)
RECHUB_UNARY(sqrt, std::sqrt(x), 0.5 / y, false, true)
RECHUB_UNARY(abs, std::abs(x), (x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0)), true, false)
RECHUB_UNARY(relu, (x > 0 ? x : decltype(x)(0)), (x > 0 ? 1.0 : 0.0), true, false)
RECHUB_UNARY(sigmoid, (x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x))), y*(1 - y), false, true)
RECHUB_UNARY(tanh, std::tanh(x), 1 - y * y, false, true)
#undef RECHUB_UNARY

Tensor add(const Tensor& a, double s) {
  Tensor out = unary_raw(
      "add", a, [s](auto x) { return x + s; }, CudaUnary::add, s);
  return record(out, "add_scalar", {a},
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = unary_raw(
      "mul", a, [s](auto x) { return x * s; }, CudaUnary::mul, s);
  return record(out, "mul_scalar", {a},
                [s](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{mul(g, s)}; });
}

Tensor rsub(double s, const Tensor& a) {
  Tensor out = unary_raw(
      "rsub", a, [s](auto x) { return s - x; }, CudaUnary::rsub, s);
  return record(out, "rsub", {a},
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{neg(g)}; });
}

Tensor rdiv(double s, const Tensor& a) {
  Tensor out = unary_raw(
      "rdiv", a, [s](auto x) { return s / x; }, CudaUnary::rdiv, s);
  return record(out, "rdiv", {a}, [s, x = a.detach()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{unary_grad(
        g, x, Tensor(), [s](auto x, auto) { return -s / (x * x); }, CudaUnary::rdiv, s)};
  });
}

Tensor pow(const Tensor& a, double p) {
  Tensor out = unary_raw(
      "pow", a, [p](auto x) { return std::pow(x, p); }, CudaUnary::pow, p);
  return record(out, "pow", {a}, [p, x = a.detach()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{unary_grad(
        g, x, Tensor(), [p](auto x, auto) { return p == 0 ? 0.0 : p * std::pow(x, p - 1); }, CudaUnary::pow, p)};
  });
}

Tensor clamp(const Tensor& a, double lo, double hi) {
  RECHUB_CHECK(!(lo > hi), "clamp: lower bound " << lo << " is above upper bound " << hi);
  Tensor out = unary_raw(
      "clamp", a,
      [lo, hi](auto x) {
        using T = decltype(x);
        return std::isnan(x) ? x : std::min(std::max(x, T(lo)), T(hi));
      },
      CudaUnary::clamp, lo, hi);
  return record(out, "clamp", {a}, [lo, hi, x = a.detach()](const Tensor& g, const std::vector<bool>&) {
    // Gradient passes where the input is inside [lo, hi] (bounds included, like PyTorch).
    return std::vector<Tensor>{unary_grad(
        g, x, Tensor(), [lo, hi](auto x, auto) { return x >= lo && x <= hi ? 1.0 : 0.0; }, CudaUnary::clamp, lo, hi)};
  });
}

Tensor leaky_relu(const Tensor& a, double slope) {
  Tensor out = unary_raw(
      "leaky_relu", a, [slope](auto x) { return x > 0 ? x : x * decltype(x)(slope); }, CudaUnary::leaky_relu, slope);
  return record(out, "leaky_relu", {a}, [slope, x = a.detach()](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{unary_grad(
        g, x, Tensor(), [slope](auto x, auto) { return x > 0 ? 1.0 : slope; }, CudaUnary::leaky_relu, slope)};
  });
}

Tensor prelu(const Tensor& a, const Tensor& w) {
  check_float_operands("prelu", {&a, &w});
  RECHUB_CHECK(w.dim() == 1, "prelu: weight must be 1-D, got " << shape_str(w.shape()));
  const int64_t c = w.numel();
  RECHUB_CHECK(c == 1 || (a.dim() >= 2 && a.size(1) == c),
               "prelu: weight has " << c << " elements; expected 1 or the channel count (dim 1) of input "
                                    << shape_str(a.shape()));
  // prelu(x) = relu(x) - w * relu(-x), composed from differentiable ops so both gradients flow;
  // a per-channel weight is broadcast as [C, 1, ...] against [N, C, ...].
  Shape ws(a.dim(), 1);
  if (c > 1) ws[1] = c;
  const Tensor wb = c > 1 ? reshape(w, ws) : w;
  return sub(relu(a), mul(relu(neg(a)), wb));
}

}  // namespace ops
}  // namespace rechub
