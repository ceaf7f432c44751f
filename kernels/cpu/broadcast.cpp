#include "rechub/kernels/cpu/broadcast.h"

#include <cstring>

#include "rechub/kernels/cpu/parallel.h"

namespace rechub::kernels::cpu {

namespace {

std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& shape, const std::vector<int64_t>& out_shape) {
  std::vector<int64_t> st(out_shape.size(), 0);
  int64_t s = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    st[d] = shape[d] == 1 && out_shape[d] != 1 ? 0 : s;
    s *= shape[d];
  }
  return st;
}

template <class T, class F>
void run(const std::vector<int64_t>& os, const T* a, const std::vector<int64_t>& as, const T* b,
         const std::vector<int64_t>& bs, T* out, F f) {
  int64_t n = 1;
  for (int64_t d : os) n *= d;
  if (n == 0) return;
  if (as == os && bs == os) return binary_map(n, a, b, out, f);
  int64_t na = 1, nb = 1;
  for (int64_t d : as) na *= d;
  for (int64_t d : bs) nb *= d;
  if (nb == 1 && as == os) {
    const T s = b[0];
    return unary_map(n, a, out, [&](T x) { return f(x, s); });
  }
  if (na == 1 && bs == os) {
    const T s = a[0];
    return unary_map(n, b, out, [&](T x) { return f(s, x); });
  }
  const int64_t r = static_cast<int64_t>(os.size());
  const auto sa = broadcast_strides(as, os), sb = broadcast_strides(bs, os);
  const int64_t inner = os[r - 1], outer = n / inner;
  const int64_t ia = sa[r - 1], ib = sb[r - 1];
  parallel_for(outer, kParallelGrain / (inner > 0 ? inner : 1), [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; ++o) {
      int64_t rem = o, offa = 0, offb = 0;
      for (int64_t d = r - 2; d >= 0; --d) {
        const int64_t idx = rem % os[d];
        rem /= os[d];
        offa += idx * sa[d];
        offb += idx * sb[d];
      }
      const T* pa = a + offa;
      const T* pb = b + offb;
      T* po = out + o * inner;
      if (ia == 1 && ib == 1) {
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) po[i] = f(pa[i], pb[i]);
      } else if (ia == 1) {
        const T s = pb[0];
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) po[i] = f(pa[i], s);
      } else if (ib == 1) {
        const T s = pa[0];
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) po[i] = f(s, pb[i]);
      } else {
        for (int64_t i = 0; i < inner; ++i) po[i] = f(pa[0], pb[0]);
      }
    }
  });
}

}  // namespace

template <class T>
void broadcast_binary(BinaryOp op, const std::vector<int64_t>& os, const T* a, const std::vector<int64_t>& as,
                      const T* b, const std::vector<int64_t>& bs, T* out) {
  switch (op) {
    case BinaryOp::add:
      return run(os, a, as, b, bs, out, [](T x, T y) { return x + y; });
    case BinaryOp::sub:
      return run(os, a, as, b, bs, out, [](T x, T y) { return x - y; });
    case BinaryOp::mul:
      return run(os, a, as, b, bs, out, [](T x, T y) { return x * y; });
    case BinaryOp::div:
      return run(os, a, as, b, bs, out, [](T x, T y) { return x / y; });
  }
}

template <class T>
void sum_to(const T* in, const std::vector<int64_t>& fs, T* out, const std::vector<int64_t>& ts) {
  int64_t n = 1, m = 1;
  for (int64_t d : fs) n *= d;
  for (int64_t d : ts) m *= d;
  std::memset(static_cast<void*>(out), 0, sizeof(T) * m);
  if (n == 0) return;
  const int64_t r = static_cast<int64_t>(fs.size());
  const auto st = broadcast_strides(ts, fs);
  const int64_t inner = fs[r - 1], outer = n / inner, it = st[r - 1];
  // Sequential over rows so the sum order is fixed (deterministic results).
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, off = 0;
    for (int64_t d = r - 2; d >= 0; --d) {
      off += (rem % fs[d]) * st[d];
      rem /= fs[d];
    }
    const T* pi = in + o * inner;
    T* po = out + off;
    if (it == 1) {
#pragma omp simd
      for (int64_t i = 0; i < inner; ++i) po[i] += pi[i];
    } else {
      T s = 0;
      for (int64_t i = 0; i < inner; ++i) s += pi[i];
      po[0] += s;
    }
  }
}

template void broadcast_binary<float>(BinaryOp, const std::vector<int64_t>&, const float*, const std::vector<int64_t>&,
                                      const float*, const std::vector<int64_t>&, float*);
template void broadcast_binary<double>(BinaryOp, const std::vector<int64_t>&, const double*,
                                       const std::vector<int64_t>&, const double*, const std::vector<int64_t>&,
                                       double*);
template void sum_to<float>(const float*, const std::vector<int64_t>&, float*, const std::vector<int64_t>&);
template void sum_to<double>(const double*, const std::vector<int64_t>&, double*, const std::vector<int64_t>&);

}  // namespace rechub::kernels::cpu
