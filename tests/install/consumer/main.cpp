// A product embedding rechub: one differentiable expression through the installed package.
#include <cstdio>

#include "rechub/core/ops.h"

int main() {
  using namespace rechub;
  Tensor w = from_vector(std::vector<float>{1.f, 2.f}, {2}, {.requires_grad = true});
  Tensor loss = ops::sum(w * w);
  backward(loss);
  const auto g = w.grad().to_vector<float>();
  if (g[0] != 2.f || g[1] != 4.f) return 1;
  std::printf("grad ok\n");
  return 0;
}
