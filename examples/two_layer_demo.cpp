// The smallest end-to-end use of the engine: fit a 2-layer network y = w2 · relu(W1 x + b1) + b2
// to a planted non-linear function with plain SGD, printing the loss per epoch.
#include <cmath>
#include <cstdio>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"

int main() {
  using namespace rechub;
  Generator gen(7);
  const int64_t n = 4096, in = 8, hidden = 32, batch = 256;
  Tensor x = randn({n, in}, {}, &gen);
  // Target: a smooth non-linear function of the inputs plus a little noise.
  Tensor y;
  {
    NoGradGuard ng;
    Tensor u = randn({in, 1}, {}, &gen);
    Tensor z = ops::matmul(x, u);
    y = ops::tanh(z) + ops::mul(z, z) * 0.1 + randn({n, 1}, {}, &gen) * 0.05;
  }
  const double bound1 = 1.0 / std::sqrt(double(in)), bound2 = 1.0 / std::sqrt(double(hidden));
  Tensor w1 = uniform({hidden, in}, -bound1, bound1, {.requires_grad = true}, &gen);
  Tensor b1 = uniform({hidden}, -bound1, bound1, {.requires_grad = true}, &gen);
  Tensor w2 = uniform({1, hidden}, -bound2, bound2, {.requires_grad = true}, &gen);
  Tensor b2 = uniform({1}, -bound2, bound2, {.requires_grad = true}, &gen);
  const std::vector<Tensor> params = {w1, b1, w2, b2};
  const double lr = 0.05;
  for (int epoch = 1; epoch <= 20; ++epoch) {
    double total = 0;
    for (int64_t at = 0; at < n; at += batch) {
      Tensor xb = ops::narrow(x, 0, at, batch), yb = ops::narrow(y, 0, at, batch);
      Tensor pred = ops::linear(ops::relu(ops::linear(xb, w1, b1)), w2, b2);
      Tensor loss = ops::mse_loss(pred, yb);
      for (Tensor p : params) p.zero_grad();
      backward(loss);
      NoGradGuard ng;
      for (Tensor p : params) {  // p -= lr * grad
        float* pd = p.data<float>();
        const float* g = p.grad().data<float>();
        for (int64_t i = 0; i < p.numel(); ++i) pd[i] -= static_cast<float>(lr) * g[i];
        p.bump_version();
      }
      total += loss.item() * batch;
    }
    std::printf("epoch %2d  train mse %.5f\n", epoch, total / n);
  }
  return 0;
}
