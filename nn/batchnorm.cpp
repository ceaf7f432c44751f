#include "rechub/nn/batchnorm.h"

#include <map>
#include <memory>
#include <mutex>

#include "rechub/core/ops_nn.h"

namespace rechub::nn {

BatchNorm1d::BatchNorm1d(int64_t num_features, double eps, double momentum, bool affine)
    : c_(num_features), eps_(eps), momentum_(momentum) {
  RECHUB_CHECK(num_features > 0, "BatchNorm1d: num_features must be positive, got " << num_features);
  RECHUB_CHECK(eps > 0, "BatchNorm1d: eps must be positive, got " << eps);
  RECHUB_CHECK(momentum >= 0 && momentum <= 1, "BatchNorm1d: momentum must be in [0, 1], got " << momentum);
  if (affine) {
    weight_ = register_parameter("weight", ones({c_}));
    bias_ = register_parameter("bias", zeros({c_}));
  }
  running_mean_ = register_buffer("running_mean", zeros({c_}));
  running_var_ = register_buffer("running_var", ones({c_}));
  num_batches_ = register_buffer("num_batches_tracked", zeros({}, {.dtype = DType::i64}));
}

int64_t BatchNorm1d::num_batches_tracked() const { return num_batches_.to_vector<int64_t>()[0]; }

void increment_counter(Tensor& c) {
  RECHUB_CHECK(c.defined() && c.dtype() == DType::i64 && c.numel() == 1,
               "increment_counter: expected an i64 scalar buffer");
  if (c.device().is_cpu()) {
    c.data<int64_t>()[0] += 1;
    c.bump_version();
    return;
  }
  struct Mirror {
    std::weak_ptr<Storage> storage;  // the storage the value belongs to (no reuse confusion)
    uint64_t version = 0;
    int64_t value = 0;
  };
  static std::mutex mu;
  static std::map<const TensorImpl*, Mirror>* mirrors = new std::map<const TensorImpl*, Mirror>();
  std::lock_guard<std::mutex> lk(mu);
  if (mirrors->size() > 4096)  // drop the entries of dead tensors now and then
    for (auto it = mirrors->begin(); it != mirrors->end();)
      it = it->second.storage.expired() ? mirrors->erase(it) : ++it;
  Mirror& m = (*mirrors)[c.impl()];
  const auto& storage = c.impl()->storage;
  if (m.storage.lock() != storage || m.version != c.version() || c.impl()->offset != 0) {
    m.value = c.to_vector<int64_t>()[0];  // one read after the buffer changed
    m.storage = storage;
  }
  m.value += 1;
  c.fill_(static_cast<double>(m.value));  // exact below 2^53; bumps the version
  m.version = c.version();
}

Tensor BatchNorm1d::forward(const Tensor& x) {
  RECHUB_CHECK(x.defined() && (x.dim() == 2 || x.dim() == 3) && x.size(1) == c_,
               describe() << " (num_features=" << c_ << "): expected input [N, " << c_ << "] or [N, " << c_
                          << ", L], got " << (x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor")));
  if (is_training()) {
    const int64_t per_channel = x.size(0) * (x.dim() == 3 ? x.size(2) : 1);
    RECHUB_CHECK(per_channel > 1, describe() << ": expected more than 1 value per channel when training, got input "
                                             << shape_str(x.shape())
                                             << " (a batch of one cannot be normalised; use eval() for inference)");
    increment_counter(num_batches_);
  }
  return ops::batch_norm(x, weight_, bias_, running_mean_, running_var_, is_training(), momentum_, eps_);
}

}  // namespace rechub::nn
