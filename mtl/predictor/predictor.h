#pragma once
// Predictor: serves a trained model from its checkpoint (model.safetensors written by MTLTrainer
// or `rechub train`): rebuilds the model from the checkpoint's kind and config, loads the weights,
// and encodes raw rows with the vocabularies and normalisers saved beside them.
//
//   trainer::Predictor p("runs/mmoe/model.safetensors");
//   auto probs = p.predict(rows, header);   // [row][task], probabilities (binary) or values
//
// Prediction runs in eval mode without autograd. predict() is const and safe to call from many
// threads at once: the model is only read (eval-mode layers keep no per-call state), gradient
// mode is thread-local, and each call encodes its own batch.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/models/model.h"

namespace rechub::trainer {

class Predictor {
 public:
  // `device`: where the model runs (moved there after loading; inputs come from the host and the
  // predictions go back to it, one read per batch).
  explicit Predictor(const std::string& checkpoint_path, Device device = Device::cpu());

  const std::vector<std::string>& task_names() const { return model_->task_names(); }
  const std::vector<data::TaskType>& task_types() const { return model_->task_types(); }
  bool has_preprocessor() const { return prep_ != nullptr; }
  // Throws when the checkpoint carries none (a model trained on already-encoded data).
  const data::Preprocessor& preprocessor() const;
  const models::MultiTaskModel& model() const { return *model_; }
  // The model itself, for evaluate_multi_task (which switches it to eval mode and back).
  std::shared_ptr<models::MultiTaskModel> shared_model() const { return model_; }
  const nlohmann::json& metadata() const { return metadata_; }

  // Raw rows as in a CSV file (strings), with their header; label columns may be absent.
  std::vector<std::vector<double>> predict(const std::vector<std::vector<std::string>>& rows,
                                           const std::vector<std::string>& header, int64_t batch_size = 4096) const;
  // Already-encoded rows (ids and normalised dense values as the preprocessor makes them).
  std::vector<std::vector<double>> predict(const data::Batch& batch) const;

 private:
  std::shared_ptr<models::MultiTaskModel> model_;
  std::shared_ptr<data::Preprocessor> prep_;
  nlohmann::json metadata_;
};

}  // namespace rechub::trainer
