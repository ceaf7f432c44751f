// The row-sparse gradient of embedding_lookup against a dense reference: sorted distinct rows and
// their summed gradients, on the kernel's paths (a bitmap over the table's rows for tables not much
// larger than the batch, a sort for huge ones; row widths with and without a fixed-width copy).
#include <gtest/gtest.h>

#include <map>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"

namespace rechub {
namespace {

// ids [B, F] drawn from [0, V) (a few rows repeated often), gradient [B, F*D]; checks the sparse
// gradient of the table against sums computed here in id order.
template <class I>
void check_sparse_grad(int64_t V, int64_t D, int64_t B, int64_t F, DType dtype, uint64_t seed) {
  Generator g(seed);
  std::vector<I> ids(B * F);
  for (auto& id : ids) {
    const double u = g.uniform();
    id = static_cast<I>(u < 0.5 ? static_cast<int64_t>(u * 8) % V : static_cast<int64_t>(g.uniform() * V) % V);
  }
  Tensor table = randn({V, D}, {.dtype = dtype, .requires_grad = true}, &g);
  Tensor gy = randn({B, F * D}, {.dtype = dtype}, &g);
  Tensor idt = from_vector(ids, {B, F});
  backward(ops::embedding_lookup(table, idt), gy);
  const Tensor grad = table.grad();
  ASSERT_TRUE(grad.is_sparse());
  EXPECT_EQ(grad.shape(), (Shape{V, D}));

  std::map<int64_t, std::vector<double>> want;
  const std::vector<double> gv = gy.to(DType::f64).to_vector<double>();
  for (int64_t i = 0; i < B * F; ++i) {
    auto [it, added] = want.try_emplace(static_cast<int64_t>(ids[i]), std::vector<double>(D, 0.0));
    for (int64_t j = 0; j < D; ++j) it->second[j] += gv[i * D + j];
  }
  const auto idx = grad.sparse_indices().to_vector<int64_t>();
  const auto vals = grad.sparse_values().to(DType::f64).to_vector<double>();
  ASSERT_EQ(idx.size(), want.size());
  ASSERT_EQ(vals.size(), want.size() * D);
  size_t k = 0;
  for (const auto& [row, sum] : want) {  // ascending, like the map
    EXPECT_EQ(idx[k], row);
    for (int64_t j = 0; j < D; ++j)
      EXPECT_NEAR(vals[k * D + j], sum[j], dtype == DType::f32 ? 1e-4 : 1e-12) << "row " << row << " col " << j;
    ++k;
  }
}

TEST(EmbeddingSparseGrad, SmallTableBitmapPath) {
  check_sparse_grad<int64_t>(1000, 16, 512, 4, DType::f32, 1);
  check_sparse_grad<int32_t>(1000, 16, 512, 4, DType::f32, 2);
  check_sparse_grad<int64_t>(300, 5, 64, 3, DType::f64, 3);  // width without a fixed-width copy
  check_sparse_grad<int32_t>(70, 32, 100, 2, DType::f64, 4);
  check_sparse_grad<int64_t>(4, 8, 10, 1, DType::f32, 5);
}

TEST(EmbeddingSparseGrad, LargeTableSortPath) {
  // 200k rows for 1200 or 100 ids: beyond what the bitmap is used for (64 bits of map per id), so
  // the radix sort (n >= 256) or the comparison sort (n < 256).
  check_sparse_grad<int64_t>(200000, 3, 600, 2, DType::f32, 6);
  check_sparse_grad<int32_t>(200000, 16, 50, 2, DType::f64, 7);
}

TEST(EmbeddingSparseGrad, RepeatedCallsAndTableSizesShareNoState) {
  // The bitmap scratch is reused across calls: alternate table sizes and batches.
  for (int r = 0; r < 3; ++r) {
    check_sparse_grad<int64_t>(5000, 16, 256, 8, DType::f32, 10 + r);
    check_sparse_grad<int64_t>(100, 16, 33, 3, DType::f32, 20 + r);
  }
}

TEST(EmbeddingSparseGrad, InvalidIdLeavesLaterBackwardsCorrect) {
  Tensor table = zeros({10, 16}, {.requires_grad = true});
  EXPECT_THROW(ops::embedding_lookup(table, from_vector(std::vector<int64_t>{1, 10}, {2, 1})), Error);
  EXPECT_THROW(ops::embedding_lookup(table, from_vector(std::vector<int64_t>{-1, 2}, {1, 2})), Error);
  check_sparse_grad<int64_t>(10, 16, 40, 2, DType::f32, 30);
}

}  // namespace
}  // namespace rechub
