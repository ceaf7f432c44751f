#include "rechub/mtl/predictor/predictor.h"

#include <algorithm>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops_fused.h"
#include "rechub/nn/checkpoint.h"

namespace rechub::trainer {

Predictor::Predictor(const std::string& path, Device device) {
  metadata_ = nn::read_checkpoint_metadata(path);
  RECHUB_CHECK(metadata_.is_object() && metadata_.contains("model") && metadata_["model"].contains("kind"),
               path << ": not a rechub model checkpoint (its metadata has no 'model' record)");
  model_ = models::make_model(metadata_["model"]["kind"].get<std::string>(), metadata_["model"]["config"]);
  nn::load_checkpoint(path, *model_);
  if (!device.is_cpu()) model_->to(device);
  model_->eval();
  if (metadata_.contains("preprocessor") && metadata_["preprocessor"].is_object())
    prep_ = std::make_shared<data::Preprocessor>(data::Preprocessor::from_json(metadata_["preprocessor"], path));
}

const data::Preprocessor& Predictor::preprocessor() const {
  RECHUB_CHECK(prep_ != nullptr,
               "this checkpoint carries no preprocessor (vocabularies); predict from encoded batches");
  return *prep_;
}

std::vector<std::vector<double>> Predictor::predict(const data::Batch& batch) const {
  NoGradGuard ng;
  // The loaded weights do not change: the expert blocks keep their stacked weights between calls.
  const ops::ConstantWeightsScope constant;
  const models::ModelOutput out = model_->forward(batch.sparse, batch.dense);
  const Tensor P = out.prediction_matrix().to(Device::cpu());
  const int64_t n = P.size(0), T = P.size(1);
  const float* p = P.data<float>();
  std::vector<std::vector<double>> r(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(T)));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < T; ++t) r[static_cast<size_t>(i)][static_cast<size_t>(t)] = p[i * T + t];
  return r;
}

std::vector<std::vector<double>> Predictor::predict(const std::vector<std::vector<std::string>>& rows,
                                                    const std::vector<std::string>& header, int64_t batch_size) const {
  RECHUB_CHECK(batch_size > 0, "batch_size must be positive, got " << batch_size);
  const data::Preprocessor& prep = preprocessor();
  std::vector<std::vector<double>> out;
  out.reserve(rows.size());
  for (size_t b = 0; b < rows.size(); b += static_cast<size_t>(batch_size)) {
    const size_t e = std::min(rows.size(), b + static_cast<size_t>(batch_size));
    const std::vector<std::vector<std::string>> chunk(rows.begin() + static_cast<std::ptrdiff_t>(b),
                                                      rows.begin() + static_cast<std::ptrdiff_t>(e));
    auto r = predict(prep.encode_rows(chunk, header));
    for (auto& x : r) out.push_back(std::move(x));
  }
  return out;
}

}  // namespace rechub::trainer
