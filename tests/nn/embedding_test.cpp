// EmbeddingCollection: arena layout, shared tables, lookups equal to the table rows, id range
// errors naming the feature, row-sparse and dense gradients, forward_3d.
#include "rechub/nn/embedding.h"

#include <gtest/gtest.h>

#include <map>

#include "rechub/core/autograd.h"
#include "rechub/core/ops.h"
#include "rechub/core/rng.h"

namespace rechub::nn {
namespace {

EmbeddingCollection make() {
  return EmbeddingCollection({{"user", 10, 4, ""}, {"item", 7, 4, ""}, {"hist_item", 0, 0, "item"}, {"cat", 5, 8, ""}},
                             {.init_std = 0.5, .seed = 3});
}

TEST(EmbeddingCollection, OneArenaPerWidthWithOffsets) {
  auto e = make();
  auto np = e.named_parameters();
  ASSERT_EQ(np.size(), 2u);
  EXPECT_EQ(np[0].first, "arena_d4");
  EXPECT_EQ(np[0].second.shape(), (Shape{17, 4}));
  EXPECT_EQ(np[1].first, "arena_d8");
  EXPECT_EQ(np[1].second.shape(), (Shape{5, 8}));
  EXPECT_EQ(e.slot("item").offset, 10);
  EXPECT_EQ(e.slot("hist_item").offset, 10);
  EXPECT_EQ(e.slot("hist_item").owner, "item");
  EXPECT_EQ(e.output_dim(), 4 + 4 + 4 + 8);
  auto j = e.layout_json();
  EXPECT_EQ(j["features"][2]["owner"], "item");
  EXPECT_EQ(j["arenas"][1]["rows"], 5);
}

TEST(EmbeddingCollection, LookupReturnsTableRowsInFeatureOrder) {
  auto e = make();
  Tensor ids = from_vector(std::vector<int32_t>{3, 6, 2, 4, 0, 1, 6, 0}, {2, 4});
  Tensor out = e.forward(ids);
  ASSERT_EQ(out.shape(), (Shape{2, 20}));
  const auto o = out.to_vector<float>();
  const std::vector<std::string> f = {"user", "item", "hist_item", "cat"};
  const std::vector<int64_t> col = {0, 4, 8, 12};
  const std::vector<int32_t> idv = ids.to_vector<int32_t>();
  for (int b = 0; b < 2; ++b)
    for (int k = 0; k < 4; ++k) {
      const auto t = e.table(f[k]).to_vector<float>();
      const int64_t d = e.slot(f[k]).dim;
      for (int64_t c = 0; c < d; ++c) EXPECT_EQ(o[b * 20 + col[k] + c], t[idv[b * 4 + k] * d + c]) << f[k];
    }
  // Shared features read the same rows.
  EXPECT_EQ(e.table("hist_item").to_vector<float>(), e.table("item").to_vector<float>());
}

TEST(EmbeddingCollection, OutOfRangeIdNamesTheFeatureAndRow) {
  auto e = make();
  for (auto [bad, col, name] : {std::tuple{7, 1, "item"}, std::tuple{-1, 0, "user"}, std::tuple{5, 3, "cat"}}) {
    std::vector<int64_t> v = {0, 0, 0, 0, 1, 1, 1, 1};
    v[4 + col] = bad;
    try {
      e.forward(from_vector(v, {2, 4}));
      FAIL() << "expected an error";
    } catch (const Error& ex) {
      const std::string msg = ex.what();
      EXPECT_NE(msg.find(std::string("feature '") + name + "', row 1: id " + std::to_string(bad)), std::string::npos)
          << msg;
    }
  }
  EXPECT_THROW(e.forward(zeros({2, 3}, {.dtype = DType::i64})), Error);
  EXPECT_THROW(e.forward_3d(zeros({2, 4}, {.dtype = DType::i64})), Error);  // two widths
}

// One width, every column in order: the ids take the vectorised offset-and-check pass, in lanes of
// a multiple of the feature count with a tail. Lookups must still be the table rows, and a bad id
// anywhere (in a full lane block or in the tail, too large or negative) must name its feature and row.
TEST(EmbeddingCollection, SingleArenaIdsOffsetAndCheckedInEveryPosition) {
  EmbeddingCollection e({{"a", 11, 4, ""}, {"b", 3, 4, ""}, {"c", 100, 4, ""}}, {.init_std = 0.5, .seed = 5});
  const int64_t B = 50, F = 3;  // 150 ids: two blocks of 66 lanes and a tail of 18
  const std::vector<int64_t> rows = {11, 3, 100};
  std::vector<int64_t> v(B * F);
  for (int64_t i = 0; i < B * F; ++i) v[i] = (i * 7 + i / F) % rows[i % F];
  const auto o = e.forward(from_vector(v, {B, F})).to_vector<float>();
  const std::vector<std::string> names = {"a", "b", "c"};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t f = 0; f < F; ++f) {
      const auto t = e.table(names[f]).to_vector<float>();
      for (int64_t c = 0; c < 4; ++c) ASSERT_EQ(o[b * 12 + f * 4 + c], t[v[b * F + f] * 4 + c]) << b << " " << f;
    }
  for (auto [pos, bad] : {std::pair<int64_t, int64_t>{1, 3}, {65, -1}, {70, 100}, {141, 11}, {149, -5}}) {
    std::vector<int64_t> w = v;
    w[pos] = bad;
    const int64_t b = pos / F, f = pos % F;
    try {
      e.forward(from_vector(w, {B, F}));
      FAIL() << "expected an error for position " << pos;
    } catch (const Error& ex) {
      const std::string msg = ex.what();
      EXPECT_NE(msg.find("feature '" + names[f] + "', row " + std::to_string(b) + ": id " + std::to_string(bad)),
                std::string::npos)
          << msg;
    }
  }
}

TEST(EmbeddingCollection, SpecErrors) {
  EXPECT_THROW(EmbeddingCollection({{"a", 3, 4, ""}, {"a", 3, 4, ""}}), Error);
  EXPECT_THROW(EmbeddingCollection({{"a", 3, 4, "b"}}), Error);
  EXPECT_THROW(EmbeddingCollection({{"a", 0, 4, "b"}, {"b", 0, 4, "a"}}), Error);
  EXPECT_THROW(EmbeddingCollection({{"a", 3, 4, ""}, {"b", 0, 8, "a"}}), Error);
  EXPECT_THROW(EmbeddingCollection({{"a", 3, 4, ""}, {"b", 9, 0, "a"}}), Error);
  EXPECT_THROW(EmbeddingCollection({{"a", 0, 4, ""}}), Error);
}

TEST(EmbeddingCollection, SparseGradientHoldsOnlyTouchedRows) {
  auto e = make();
  Tensor ids = from_vector(std::vector<int64_t>{3, 6, 6, 4, 3, 1, 2, 0}, {2, 4});
  backward(ops::sum(e.forward(ids)));
  Tensor g = e.arenas()[0].grad();
  ASSERT_TRUE(g.is_sparse());
  // user 3 (twice) -> row 3; item 6 -> 16 (plus hist_item 6 -> 16), item 1 -> 11, hist 2 -> 12.
  auto c = g.coalesce();
  EXPECT_EQ(c.sparse_indices().to_vector<int64_t>(), (std::vector<int64_t>{3, 11, 12, 16}));
  const auto v = c.sparse_values().to_vector<float>();
  EXPECT_FLOAT_EQ(v[0], 2.0f);
  EXPECT_FLOAT_EQ(v[3 * 4], 2.0f);
  EXPECT_FLOAT_EQ(v[1 * 4], 1.0f);
}

TEST(EmbeddingCollection, DenseModeGivesDenseGradient) {
  EmbeddingCollection e({{"a", 6, 3, ""}, {"b", 0, 0, "a"}}, {.sparse = false});
  Tensor ids = from_vector(std::vector<int32_t>{1, 1, 4, 5}, {2, 2});
  Tensor out3 = e.forward_3d(ids);
  EXPECT_EQ(out3.shape(), (Shape{2, 2, 3}));
  backward(ops::sum(out3));
  Tensor g = e.arenas()[0].grad();
  ASSERT_FALSE(g.is_sparse());
  const auto v = g.to_vector<float>();
  EXPECT_EQ(v[1 * 3], 2.0f);
  EXPECT_EQ(v[4 * 3], 1.0f);
  EXPECT_EQ(v[0], 0.0f);
}

TEST(RowSparseGradient, CoalesceSumsDuplicatesLikeANaiveMap) {
  // The unique-row reduction behind the sparse backward and coalesce(), on skewed, negative and
  // wide-ranging row ids, against a std::map reference.
  Generator g(17);
  for (int64_t n : {0, 1, 7, 5000}) {
    std::vector<int64_t> idx(n);
    for (auto& v : idx) {
      const uint64_t r = g.randint(4);
      v = r == 0   ? static_cast<int64_t>(g.randint(5))
          : r == 1 ? -static_cast<int64_t>(g.randint(1000)) - 1
          : r == 2 ? static_cast<int64_t>(g.randint(1ull << 40))
                   : static_cast<int64_t>(g.randint(300000));
    }
    Tensor vals = randn({n, 3}, {.dtype = DType::f64}, &g);
    Tensor c = Tensor::sparse_rows(from_vector(idx, {n}), vals, {1, 3}).coalesce();
    std::map<int64_t, std::vector<double>> ref;
    const auto vv = vals.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      auto& row = ref[idx[i]];
      row.resize(3, 0.0);
      for (int j = 0; j < 3; ++j) row[j] += vv[i * 3 + j];
    }
    const auto ci = c.sparse_indices().to_vector<int64_t>();
    const auto cv = c.sparse_values().to_vector<double>();
    ASSERT_EQ(ci.size(), ref.size()) << n;
    size_t k = 0;
    for (const auto& [row, sum] : ref) {
      EXPECT_EQ(ci[k], row);
      for (int j = 0; j < 3; ++j) EXPECT_NEAR(cv[k * 3 + j], sum[j], 1e-12);
      ++k;
    }
  }
}

}  // namespace
}  // namespace rechub::nn
