#include "rechub/core/rng.h"

#include <cmath>
#include <mutex>

namespace rechub {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::manual_seed(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
  has_spare_ = false;
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Generator::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // Box-Muller on (0, 1] x [0, 1): only sqrt, log, cos and sin, so results agree wherever libm
  // rounds these correctly.
  const double u1 = 1.0 - uniform(), u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double th = 2.0 * M_PI * u2;
  spare_ = r * std::sin(th);
  has_spare_ = true;
  return r * std::cos(th);
}

uint64_t Generator::randint(uint64_t n) {
  RECHUB_CHECK(n > 0, "randint: n must be positive");
  // Lemire's rejection: unbiased for every n.
  const uint64_t limit = (0 - n) % n;
  while (true) {
    const uint64_t x = next_u64();
    const __uint128_t m = static_cast<__uint128_t>(x) * n;
    if (static_cast<uint64_t>(m) >= limit) return static_cast<uint64_t>(m >> 64);
  }
}

void Generator::set_state(const State& st) {
  for (int i = 0; i < 4; ++i) s_[i] = st.s[i];
  has_spare_ = st.has_spare;
  spare_ = st.spare;
}

Generator& default_generator() {
  static Generator g(0x5eed);
  return g;
}
void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {
template <class F>
Tensor fill_random(const Shape& shape, TensorOptions opts, F draw) {
  RECHUB_CHECK(is_floating(opts.dtype), "random tensors must be f32 or f64, got " << dtype_name(opts.dtype));
  Tensor t = empty(shape, {.dtype = opts.dtype});
  const int64_t n = t.numel();
  if (opts.dtype == DType::f32) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(draw());
  } else {
    double* p = t.data<double>();
    for (int64_t i = 0; i < n; ++i) p[i] = draw();
  }
  if (!opts.device.is_cpu()) t = t.to(opts.device);
  if (opts.requires_grad) t.requires_grad_(true);
  return t;
}
}  // namespace

Tensor randn(const Shape& shape, TensorOptions opts, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  return fill_random(shape, opts, [&] { return g.normal(); });
}
Tensor rand(const Shape& shape, TensorOptions opts, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  return fill_random(shape, opts, [&] { return g.uniform(); });
}
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opts, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  return fill_random(shape, opts, [&] { return lo + (hi - lo) * g.uniform(); });
}
Tensor bernoulli(const Shape& shape, double p, TensorOptions opts, Generator* gen) {
  RECHUB_CHECK(p >= 0 && p <= 1, "bernoulli: p must be in [0, 1], got " << p);
  Generator& g = gen ? *gen : default_generator();
  return fill_random(shape, opts, [&] { return g.bernoulli(p) ? 1.0 : 0.0; });
}

}  // namespace rechub
