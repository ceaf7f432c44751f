// Every op rejects bad input with a rechub::Error whose message says what was wrong.
#include <gtest/gtest.h>

#include "rechub/core/ops.h"
#include "rechub/core/rng.h"

namespace rechub {
namespace {

#define EXPECT_ERROR_CONTAINS(stmt, text)                                                        \
  do {                                                                                           \
    try {                                                                                        \
      stmt;                                                                                      \
      ADD_FAILURE() << "expected rechub::Error containing '" << text << "'";                     \
    } catch (const Error& e) {                                                                   \
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << "message: " << e.what(); \
    }                                                                                            \
  } while (0)

TEST(Errors, OpsNameTheProblem) {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  EXPECT_ERROR_CONTAINS(ops::add(a, b), "cannot be broadcast");
  EXPECT_ERROR_CONTAINS(ops::matmul(a, b), "inner dimensions differ");
  EXPECT_ERROR_CONTAINS(ops::matmul(zeros({3}), b), "expected 2-D");
  EXPECT_ERROR_CONTAINS(ops::linear(a, zeros({4, 5}).set_name("tower.0.weight")), "'tower.0.weight'");
  EXPECT_ERROR_CONTAINS(ops::add(a, zeros({2, 3}, {.dtype = DType::f64})), "different dtypes");
  EXPECT_ERROR_CONTAINS(ops::exp(zeros({2}, {.dtype = DType::i64})), "floating-point");
  EXPECT_ERROR_CONTAINS(ops::reshape(a, {4, 2}), "does not hold");
  EXPECT_ERROR_CONTAINS(ops::reshape(a, {-1, -1}), "only one dimension");
  EXPECT_ERROR_CONTAINS(ops::softmax(a, 2), "out of range");
  EXPECT_ERROR_CONTAINS(ops::narrow(a, 1, 2, 2), "outside dimension");
  EXPECT_ERROR_CONTAINS(ops::concat({a, zeros({2, 3, 1})}, 0), "rank");
  EXPECT_ERROR_CONTAINS(ops::concat({a, zeros({3, 3})}, 1), "incompatible");
  EXPECT_ERROR_CONTAINS(ops::index_select(a, from_vector(std::vector<int64_t>{0, 2}, {2})), "index 2");
  EXPECT_ERROR_CONTAINS(ops::index_select(a, zeros({1})), "integer tensor");
  EXPECT_ERROR_CONTAINS(ops::split(a, std::vector<int64_t>{1, 1}, 1), "add up to 2");
  EXPECT_ERROR_CONTAINS(ops::bce_with_logits(a, zeros({3})), "same shape");
  EXPECT_ERROR_CONTAINS(ops::binary_cross_entropy(full({2}, 1.5), zeros({2})), "not a probability");
  EXPECT_ERROR_CONTAINS(ops::clamp(a, 1, 0), "above upper bound");
  EXPECT_ERROR_CONTAINS(ops::prelu(a, zeros({2})), "channel count");
  EXPECT_ERROR_CONTAINS(ops::norm(a, 3), "p must be 1 or 2");
  EXPECT_ERROR_CONTAINS(ops::mean(zeros({0})), "empty");
}

TEST(Errors, EmbeddingIdOutsideVocabularyNamesTheFeature) {
  Tensor table = zeros({10, 4});
  Tensor ids = from_vector(std::vector<int64_t>{1, 4, 2, 9}, {2, 2});
  ops::EmbeddingCheck check{{"user_id", "item_id"}, {{0, 5}, {5, 10}}};
  EXPECT_ERROR_CONTAINS(ops::embedding_lookup(table, ids, &check), "feature 'item_id', row 0: id -1");
  Tensor bad = from_vector(std::vector<int64_t>{1, 5, 7, 10}, {2, 2});
  EXPECT_ERROR_CONTAINS(ops::embedding_lookup(table, bad), "id 10 is outside the vocabulary of size 10");
}

TEST(Errors, TensorMisuseIsReported) {
  Tensor t;
  EXPECT_ERROR_CONTAINS(t.shape(), "undefined tensor");
  Tensor x = zeros({2});
  EXPECT_ERROR_CONTAINS(x.data<double>(), "holds f32");
  EXPECT_ERROR_CONTAINS(x.item(), "one element");
  EXPECT_ERROR_CONTAINS(zeros({2}, {.dtype = DType::i32}).requires_grad_(), "floating-point");
  Tensor p = zeros({2}, {.requires_grad = true});
  Tensor y = p * 2.0;
  EXPECT_ERROR_CONTAINS(y.requires_grad_(), "only leaves");
  EXPECT_ERROR_CONTAINS(from_vector(std::vector<float>{1, 2, 3}, {2, 2}), "do not fill");
  EXPECT_ERROR_CONTAINS(Device::parse("gpu"), "unknown device 'gpu'");
  EXPECT_ERROR_CONTAINS(dtype_from_name("f16"), "unknown dtype 'f16'");
  EXPECT_ERROR_CONTAINS(zeros({2}).to(Device::cuda(0)), "cuda");
}

}  // namespace
}  // namespace rechub
