// rechub._rechub: the pybind11 layer under the `rechub` Python package (python/rechub).
//
// Thin on purpose: the Python modules check arguments and convert arrays (naming the feature and
// row of a bad value); this file turns them into the library's objects (Schema, model configs,
// TrainerOptions) and runs the library. Column arrays cross without copies: ColumnSource reads
// the numpy buffers in place (the Python side hands over C-contiguous int64 / float32 columns,
// converting only arrays of another dtype or layout).
//
// fit, evaluate and predict release the GIL. During fit the trainer calls back after every batch:
// the callback takes the GIL, runs Python's signal handlers (Ctrl-C raises KeyboardInterrupt
// there, which leaves fit between two batches) and, after each epoch, hands the record to a
// Python function (the package logs it through `logging`).
#include <omp.h>
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rechub/core/error.h"
#include "rechub/mtl/data/dataset.h"
#include "rechub/mtl/data/loader.h"
#include "rechub/mtl/data/preprocessor.h"
#include "rechub/mtl/data/schema.h"
#include "rechub/mtl/data/synth/synthetic.h"
#include "rechub/mtl/metrics/evaluate.h"
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/model.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/mtl/trainer/trainer.h"
#ifdef RECHUB_WITH_ONNX
#include "rechub/mtl/export/onnx_export.h"
#endif

namespace py = pybind11;
using rechub::Error;
namespace data = rechub::data;
namespace models = rechub::models;
namespace trainer = rechub::trainer;
namespace metrics = rechub::metrics;

namespace {

using I64Column = py::array_t<int64_t, py::array::c_style>;
using F32Column = py::array_t<float, py::array::c_style>;

// Rows held as one numpy array per column (ids, dense values, labels), read where they lie.
// The arrays are owned here (references taken with the GIL held); gather runs on the loader's
// thread without the GIL and only reads their memory.
class ColumnSource final : public data::BatchSource {
 public:
  ColumnSource(data::Schema schema, std::vector<I64Column> sparse, std::vector<F32Column> dense,
               std::vector<F32Column> labels)
      : schema_(std::move(schema)), sparse_(std::move(sparse)), dense_(std::move(dense)), labels_(std::move(labels)) {
    RECHUB_CHECK(sparse_.size() == schema_.sparse.size() && dense_.size() == schema_.dense.size() &&
                     labels_.size() == schema_.labels.size(),
                 "ColumnSource: " << sparse_.size() << "/" << dense_.size() << "/" << labels_.size()
                                  << " sparse/dense/label columns for a schema of " << schema_.sparse.size() << "/"
                                  << schema_.dense.size() << "/" << schema_.labels.size());
    rows_ = -1;
    auto take = [&](const py::array& a, const std::string& name) {
      RECHUB_CHECK(a.ndim() == 1, "column '" << name << "' must be 1-D");
      if (rows_ < 0) rows_ = a.shape(0);
      RECHUB_CHECK(a.shape(0) == rows_, "column '" << name << "' has " << a.shape(0) << " rows, others " << rows_);
    };
    for (size_t j = 0; j < sparse_.size(); ++j) {
      take(sparse_[j], schema_.sparse[j].name);
      sp_.push_back(sparse_[j].data());
    }
    for (size_t j = 0; j < dense_.size(); ++j) {
      take(dense_[j], schema_.dense[j].name);
      de_.push_back(dense_[j].data());
    }
    for (size_t j = 0; j < labels_.size(); ++j) {
      take(labels_[j], schema_.labels[j].column);
      la_.push_back(labels_[j].data());
    }
    RECHUB_CHECK(rows_ >= 0, "ColumnSource: no columns");
  }
  ~ColumnSource() override {
    // Destroyed from Python (the holders live in Python objects); the arrays' references need the GIL.
    py::gil_scoped_acquire gil;
    sparse_.clear();
    dense_.clear();
    labels_.clear();
  }

  int64_t rows() const override { return rows_; }
  const data::Schema& schema() const override { return schema_; }
  void gather(const int64_t* rows, int64_t n, int64_t* sparse, float* dense, float* labels) const override {
    const size_t S = sp_.size(), D = de_.size(), T = la_.size();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = rows[i];
      RECHUB_CHECK(r >= 0 && r < rows_, "row " << r << " out of range [0, " << rows_ << ")");
      for (size_t j = 0; j < S; ++j) sparse[i * S + j] = sp_[j][r];
      for (size_t j = 0; j < D; ++j) dense[i * D + j] = de_[j][r];
      for (size_t j = 0; j < T; ++j) labels[i * T + j] = la_[j][r];
    }
  }
  void copy_range(int64_t begin, int64_t n, int64_t* sparse, float* dense, float* labels) const override {
    RECHUB_CHECK(begin >= 0 && n >= 0 && begin + n <= rows_,
                 "rows [" << begin << ", " << begin + n << ") out of range [0, " << rows_ << ")");
    const size_t S = sp_.size(), D = de_.size(), T = la_.size();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = begin + i;
      for (size_t j = 0; j < S; ++j) sparse[i * S + j] = sp_[j][r];
      for (size_t j = 0; j < D; ++j) dense[i * D + j] = de_[j][r];
      for (size_t j = 0; j < T; ++j) labels[i * T + j] = la_[j][r];
    }
  }

 private:
  data::Schema schema_;
  std::vector<I64Column> sparse_;
  std::vector<F32Column> dense_, labels_;
  std::vector<const int64_t*> sp_;
  std::vector<const float*> de_, la_;
  int64_t rows_ = 0;
};

data::TaskType task_type(const std::string& s) {
  if (s == "binary") return data::TaskType::binary;
  if (s == "regression") return data::TaskType::regression;
  RECHUB_FAIL("task type '" << s << "' (expected binary or regression)");
}

// sparse: [(name, vocab_size, embed_dim, shared_with)], dense: [name], labels: [(task, column, type)].
data::Schema make_schema(const std::vector<std::tuple<std::string, int64_t, int64_t, std::string>>& sparse,
                         const std::vector<std::string>& dense,
                         const std::vector<std::tuple<std::string, std::string, std::string>>& labels) {
  data::Schema s;
  for (const auto& [name, vocab, dim, shared] : sparse)
    s.sparse.push_back({.name = name, .vocab_size = vocab, .embed_dim = dim, .shared_with = shared});
  for (const auto& name : dense) s.dense.push_back({.name = name});
  for (const auto& [task, column, type] : labels)
    s.labels.push_back({.task = task, .column = column, .type = task_type(type)});
  return s;
}

// The preprocessor a checkpoint of Python-trained data carries: the ids are already encoded, so
// each sparse feature's vocabulary maps the raw value "k" to id k (k = 1 .. vocab_size - 1; "0"
// and anything else to the OOV id 0) and dense values pass unchanged. `rechub eval` / `predict`
// then read a CSV of the same encoded columns exactly as Python saw them.
std::shared_ptr<const data::Preprocessor> identity_preprocessor(const data::Schema& schema) {
  data::validate_schema(schema);
  nlohmann::json j;
  j["format"] = "rechub-preprocessor";
  j["version"] = 1;
  j["schema"] = data::schema_to_json(schema);
  j["base_schema"] = data::schema_to_json(schema);
  j["options"] = data::preprocess_options_to_json({});
  j["csv"] = data::csv_options_to_json({});
  j["vocabularies"] = nlohmann::json::object();
  for (const auto& f : schema.sparse) {
    if (!f.shared_with.empty()) continue;
    std::vector<std::string> values;
    values.reserve(static_cast<size_t>(std::max<int64_t>(f.vocab_size - 1, 0)));
    for (int64_t k = 1; k < f.vocab_size; ++k) values.push_back(std::to_string(k));
    j["vocabularies"][f.name] = {{"values", values}};
  }
  j["normalizers"] = nlohmann::json::object();
  for (const auto& f : schema.dense) j["normalizers"][f.name] = data::Normalizer{}.to_json();
  return std::make_shared<data::Preprocessor>(data::Preprocessor::from_json(j, "identity preprocessor"));
}

template <class T>
T get(const py::dict& d, const char* key, T fallback) {
  return d.contains(key) ? d[key].cast<T>() : fallback;
}

// kind: shared_bottom | esmm | mmoe | omoe | ple | aitm; p: the sizes (see python/rechub/models).
std::shared_ptr<models::MultiTaskModel> build_model(const std::string& kind, const data::Schema& schema,
                                                    const std::vector<std::string>& task_names,
                                                    const std::vector<std::string>& task_types, const py::dict& p) {
  models::Features f{.sparse = schema.sparse, .dense = schema.dense};
  std::vector<data::TaskType> types;
  for (const auto& t : task_types) types.push_back(task_type(t));
  const auto T = static_cast<int64_t>(task_names.size());
  using V = std::vector<int64_t>;
  const double dropout = get<double>(p, "dropout", 0.0);
  const auto seed = get<uint64_t>(p, "seed", 1);
  if (kind == "shared_bottom")
    return std::make_shared<models::SharedBottom>(
        models::SharedBottomConfig{.features = f,
                                   .hidden_units = get<V>(p, "hidden_units", {128, 64}),
                                   .task_hidden_units = get<V>(p, "tower_units", {32}),
                                   .num_tasks = T,
                                   .task_types = types,
                                   .task_names = task_names,
                                   .activation = get<std::string>(p, "activation", "relu"),
                                   .dropout = dropout,
                                   .seed = seed});
  if (kind == "mmoe" || kind == "omoe") {
    models::MMoEConfig c{.features = f,
                         .expert_units = get<V>(p, "expert_units", {256, 128}),
                         .num_experts = get<int64_t>(p, "num_experts", 8),
                         .num_tasks = T,
                         .task_types = types,
                         .task_names = task_names,
                         .expert_activation = get<std::string>(p, "expert_activation", "relu"),
                         .tower_units = get<V>(p, "tower_units", {64, 32}),
                         .tower_activation = get<std::string>(p, "tower_activation", "relu"),
                         .dropout = dropout,
                         .seed = seed};
    if (kind == "omoe") return std::make_shared<models::OMoE>(c);
    return std::make_shared<models::MMoE>(c);
  }
  if (kind == "ple")
    return std::make_shared<models::PLE>(
        models::PLEConfig{.features = f,
                          .expert_units = get<V>(p, "expert_units", {256, 128}),
                          .num_experts = get<int64_t>(p, "num_experts", 2),
                          .num_layers = get<int64_t>(p, "num_layers", 2),
                          .num_shared_experts = get<int64_t>(p, "num_shared_experts", 2),
                          .num_tasks = T,
                          .task_types = types,
                          .task_names = task_names,
                          .expert_activation = get<std::string>(p, "expert_activation", "relu"),
                          .tower_units = get<V>(p, "tower_units", {64, 32}),
                          .tower_activation = get<std::string>(p, "tower_activation", "relu"),
                          .dropout = dropout,
                          .seed = seed});
  if (kind == "aitm")
    return std::make_shared<models::AITM>(
        models::AITMConfig{.features = f,
                           .hidden_units = get<V>(p, "hidden_units", {128, 64}),
                           .tower_units = get<V>(p, "tower_units", {32}),
                           .num_tasks = T,
                           .task_types = types,
                           .task_names = task_names,
                           .activation = get<std::string>(p, "activation", "relu"),
                           .calibrator_weight = get<double>(p, "calibrator_weight", 0.0),
                           .dropout = dropout,
                           .seed = seed});
  if (kind == "esmm") {
    RECHUB_CHECK(T == 2, "ESMM has two tasks (ctr, ctcvr), got " << T);
    return std::make_shared<models::ESMM>(models::ESMMConfig{.features = f,
                                                             .hidden_units = get<V>(p, "hidden_units", {}),
                                                             .tower_units = get<V>(p, "tower_units", {64, 32}),
                                                             .task_names = task_names,
                                                             .activation = get<std::string>(p, "activation", "relu"),
                                                             .dropout = dropout,
                                                             .seed = seed});
  }
  RECHUB_FAIL("unknown model kind '" << kind << "'");
}

trainer::TrainerOptions trainer_options(const py::dict& d) {
  trainer::TrainerOptions o;
  o.optimizer_params.lr = get<double>(d, "lr", 1e-3);
  o.optimizer_params.weight_decay = get<double>(d, "weight_decay", 0.0);
  o.optimizer_params.kind = trainer::optimizer_kind_from_name(get<std::string>(d, "optimizer", "adam"));
  o.n_epochs = get<int64_t>(d, "n_epochs", 10);
  // torch-rechub's MTLTrainer: no scheduler unless one is given (StepLR maps to "step").
  o.lr_schedule = get<std::string>(d, "lr_schedule", "constant");
  o.lr_step_epochs = get<int64_t>(d, "lr_step_epochs", 1);
  o.lr_gamma = get<double>(d, "lr_gamma", 0.1);
  o.task_weights = get<std::vector<double>>(d, "task_weights", {});
  o.task_weights_strategy = get<std::string>(d, "strategy", "fixed");
  o.gradnorm_alpha = get<double>(d, "gradnorm_alpha", 1.5);
  o.gradnorm_lr = get<double>(d, "gradnorm_lr", 0.025);
  o.relax_factor = get<double>(d, "relax_factor", 0.7);
  o.beta = get<double>(d, "beta", 0.9);
  o.main_task = get<std::string>(d, "main_task", "");
  o.dwa_temperature = get<double>(d, "dwa_temperature", 2.0);
  o.task_specific_lr = get<std::map<std::string, double>>(d, "task_specific_lr", {});
  o.pos_weights = get<std::vector<double>>(d, "pos_weights", {});
  o.clip_grad_norm = get<double>(d, "clip_grad_norm", 0.0);
  o.earlystop_patience = get<int64_t>(d, "earlystop_patience", 0);
  o.earlystop_task = get<std::string>(d, "earlystop_task", "");
  o.earlystop_metric = get<std::string>(d, "earlystop_metric", "");
  o.out_dir = get<std::string>(d, "out_dir", "");
  o.seed = get<uint64_t>(d, "seed", 1);
  o.progress = get<bool>(d, "progress", false);
  o.finite_check_every = get<int64_t>(d, "finite_check_every", 50);
  o.device = rechub::Device::parse(get<std::string>(d, "device", "cpu"));
  return o;
}

py::array_t<double> to_numpy(const std::vector<std::vector<double>>& cols, int64_t n) {
  const auto T = static_cast<py::ssize_t>(cols.size());
  py::array_t<double> out({static_cast<py::ssize_t>(n), T});
  auto m = out.mutable_unchecked<2>();
  for (py::ssize_t t = 0; t < T; ++t)
    for (py::ssize_t i = 0; i < n; ++i) m(i, t) = cols[static_cast<size_t>(t)][static_cast<size_t>(i)];
  return out;
}

// The trainer of one model: the C++ MTLTrainer is built at the first fit (its preprocessor, the
// identity over the training data's schema, is known only then) and kept for later fits, so a
// second fit continues with the same optimizer state, as torch-rechub's does.
class Trainer {
 public:
  Trainer(std::shared_ptr<models::MultiTaskModel> model, py::dict options)
      : model_(std::move(model)), options_(trainer_options(options)) {}

  void fit(std::shared_ptr<ColumnSource> train, int64_t batch_size, bool shuffle, uint64_t loader_seed,
           std::shared_ptr<ColumnSource> val, int64_t val_batch_size, py::object on_epoch, int64_t check_every) {
    if (!trainer_) {
      trainer::TrainerOptions o = options_;
      o.preprocessor = identity_preprocessor(train->schema());
      // As in torch-rechub, early stopping watches val_dataloader: without one there is nothing to
      // watch and its default patience (10) does nothing (the C++ trainer refuses that combination).
      if (!val) o.earlystop_patience = 0;
      o.on_batch = [check_every](int64_t, int64_t batch, int64_t) {
        if (check_every > 1 && (batch + 1) % check_every != 0) return;
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      };
      // `this` outlives trainer_ (it owns it); on_epoch_ is the current fit's Python callable.
      o.on_epoch = [this](const trainer::EpochRecord& rec) {
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (!on_epoch_.is_none()) on_epoch_(rec.to_json(model_->task_names()).dump());
      };
      trainer_ = std::make_unique<trainer::MTLTrainer>(model_, o);
    }
    on_epoch_ = std::move(on_epoch);
    data::DataLoader tl(train, {.batch_size = batch_size, .shuffle = shuffle, .seed = loader_seed});
    std::unique_ptr<data::DataLoader> vl;
    if (val)
      vl = std::make_unique<data::DataLoader>(
          val, data::LoaderOptions{.batch_size = val_batch_size, .shuffle = false, .prefetch = 0});
    {
      py::gil_scoped_release nogil;
      trainer_->fit(tl, vl.get());
    }
    on_epoch_ = py::none();
  }

  std::string history() const {
    nlohmann::json h = nlohmann::json::array();
    if (trainer_)
      for (const auto& r : trainer_->history()) h.push_back(r.to_json(model_->task_names()));
    return h.dump();
  }
  int64_t best_epoch() const { return trainer_ ? trainer_->best_epoch() : -1; }
  std::vector<double> task_weights() const { return trainer_ ? trainer_->balancer().weights() : std::vector<double>{}; }
  void save_model(const std::string& path) const {
    RECHUB_CHECK(trainer_, "save_model: the model has not been fitted yet (nothing records its data's schema)");
    trainer_->save_model(path);
  }

 private:
  std::shared_ptr<models::MultiTaskModel> model_;
  trainer::TrainerOptions options_;
  std::unique_ptr<trainer::MTLTrainer> trainer_;
  py::object on_epoch_ = py::none();
};

}  // namespace

PYBIND11_MODULE(_rechub, m) {
  m.doc() = "rechub's C++ engine (used by the rechub package; see help(rechub)).";
  static py::exception<Error> rechub_error(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(rechub_error.ptr(), e.what());
    }
  });

  py::class_<data::Schema>(m, "Schema", "A fitted schema: sparse and dense features, tasks (label columns).")
      .def(py::init(&make_schema), py::arg("sparse"), py::arg("dense"), py::arg("labels"))
      .def("to_json", [](const data::Schema& s) { return data::schema_to_json(s).dump(); });

  py::class_<ColumnSource, std::shared_ptr<ColumnSource>>(m, "ColumnSource",
                                                          "Rows held as numpy columns, read in place.")
      .def(py::init<data::Schema, std::vector<I64Column>, std::vector<F32Column>, std::vector<F32Column>>(),
           py::arg("schema"), py::arg("sparse"), py::arg("dense"), py::arg("labels"))
      .def_property_readonly("rows", &ColumnSource::rows);

  py::class_<models::MultiTaskModel, std::shared_ptr<models::MultiTaskModel>>(m, "Model", "A multi-task model.")
      .def_property_readonly("kind", &models::MultiTaskModel::kind)
      .def_property_readonly("task_names", &models::MultiTaskModel::task_names)
      .def("parameter_count", &models::MultiTaskModel::parameter_count)
      .def("config_json", [](const models::MultiTaskModel& mm) { return mm.config_json().dump(); })
      .def(
          "state_dict",
          [](const models::MultiTaskModel& mm) {
            py::dict out;
            auto put = [&](const std::string& name, const rechub::Tensor& t0) {
              const rechub::Tensor t = t0.to(rechub::Device::cpu()).contiguous_copy();
              std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
              if (t.dtype() == rechub::DType::f32) {
                py::array_t<float> a(shape);
                std::memcpy(a.mutable_data(), t.data<float>(), t.nbytes());
                out[py::str(name)] = a;
              } else if (t.dtype() == rechub::DType::i64) {
                py::array_t<int64_t> a(shape);
                std::memcpy(a.mutable_data(), t.data<int64_t>(), t.nbytes());
                out[py::str(name)] = a;
              }
            };
            for (const auto& [n, t] : mm.named_parameters()) put(n, t);
            for (const auto& [n, t] : mm.named_buffers()) put(n, t);
            return out;
          },
          "Copies of every parameter and buffer, by name (numpy arrays).")
      .def(
          "shared_task_layers",
          [](const models::MultiTaskModel& mm) {
            const auto s = models::shared_task_layers(mm);
            return py::make_tuple(s.shared_names, s.task_names);
          },
          "(shared parameter names, [task][parameter names])");

  m.def("build_model", &build_model, py::arg("kind"), py::arg("schema"), py::arg("task_names"), py::arg("task_types"),
        py::arg("params"));

  py::class_<Trainer>(m, "Trainer")
      .def(py::init<std::shared_ptr<models::MultiTaskModel>, py::dict>(), py::arg("model"), py::arg("options"))
      .def("fit", &Trainer::fit, py::arg("train"), py::arg("batch_size"), py::arg("shuffle"), py::arg("seed"),
           py::arg("val"), py::arg("val_batch_size"), py::arg("on_epoch"), py::arg("check_every") = 1)
      .def("history", &Trainer::history)
      .def("best_epoch", &Trainer::best_epoch)
      .def("task_weights", &Trainer::task_weights)
      .def("save_model", &Trainer::save_model, py::arg("path"));

  m.def(
      "evaluate",
      [](std::shared_ptr<models::MultiTaskModel> model, std::shared_ptr<ColumnSource> src, int64_t batch_size) {
        metrics::EvalResult r;
        {
          py::gil_scoped_release nogil;
          r = metrics::evaluate_multi_task(*model, *src, {.batch_size = batch_size, .quiet = true});
        }
        nlohmann::json j = r.to_json();
        j["warnings"] = r.warnings;
        return j.dump();
      },
      py::arg("model"), py::arg("source"), py::arg("batch_size"));
  m.def(
      "predict",
      [](std::shared_ptr<models::MultiTaskModel> model, std::shared_ptr<ColumnSource> src, int64_t batch_size) {
        std::vector<std::vector<double>> cols;
        {
          py::gil_scoped_release nogil;
          cols = metrics::predict_rows(*model, *src, batch_size);
        }
        return to_numpy(cols, src->rows());
      },
      py::arg("model"), py::arg("source"), py::arg("batch_size"));

  py::class_<trainer::Predictor>(m, "Predictor")
      .def(py::init([](const std::string& path, const std::string& device) {
             return std::make_unique<trainer::Predictor>(path, rechub::Device::parse(device));
           }),
           py::arg("path"), py::arg("device") = "cpu")
      .def_property_readonly("task_names", &trainer::Predictor::task_names)
      .def_property_readonly("has_preprocessor", &trainer::Predictor::has_preprocessor)
      .def_property_readonly("model", &trainer::Predictor::shared_model)
      .def("metadata_json", [](const trainer::Predictor& p) { return p.metadata().dump(); })
      .def("input_columns",
           [](const trainer::Predictor& p) {
             const auto& s = p.preprocessor().schema();
             std::vector<std::string> sparse, dense;
             for (const auto& f : s.sparse) sparse.push_back(f.name);
             for (const auto& f : s.dense) dense.push_back(f.name);
             return py::make_tuple(sparse, dense);
           })
      .def(
          "predict_raw",
          [](const trainer::Predictor& p, const std::vector<std::vector<std::string>>& rows,
             const std::vector<std::string>& header, int64_t batch_size) {
            std::vector<std::vector<double>> r;
            {
              py::gil_scoped_release nogil;
              r = p.predict(rows, header, batch_size);
            }
            const auto n = static_cast<py::ssize_t>(r.size());
            const auto T = static_cast<py::ssize_t>(p.task_names().size());
            py::array_t<double> out({n, T});
            auto mo = out.mutable_unchecked<2>();
            for (py::ssize_t i = 0; i < n; ++i)
              for (py::ssize_t t = 0; t < T; ++t) mo(i, t) = r[static_cast<size_t>(i)][static_cast<size_t>(t)];
            return out;
          },
          py::arg("rows"), py::arg("header"), py::arg("batch_size") = 4096);

  m.def(
      "ali_ccp_synthetic",
      [](int64_t first_row, int64_t n, uint64_t seed, std::vector<int64_t> vocab_sizes, int64_t num_dense) {
        data::AliCcpSynthConfig c{.seed = seed, .num_dense = num_dense};
        if (!vocab_sizes.empty()) c.vocab_sizes = std::move(vocab_sizes);
        data::AliCcpRows r;
        std::vector<std::string> names;
        {
          py::gil_scoped_release nogil;
          const data::AliCcpSynth g(c);
          r = g.generate(first_row, n);
          names = g.field_names();
        }
        py::dict x;
        const auto F = static_cast<int64_t>(names.size());
        for (int64_t f = 0; f < F; ++f) {
          py::array_t<int64_t> col(n);
          auto* dst = col.mutable_data();
          for (int64_t i = 0; i < n; ++i) dst[i] = r.ids[static_cast<size_t>(i * F + f)];
          x[py::str(names[static_cast<size_t>(f)])] = col;
        }
        for (int64_t k = 0; k < num_dense; ++k) {
          py::array_t<float> col(n);
          auto* dst = col.mutable_data();
          for (int64_t i = 0; i < n; ++i) dst[i] = r.dense[static_cast<size_t>(i * num_dense + k)];
          std::string name = "D";
          name += std::to_string(k + 1);
          x[py::str(name)] = col;
        }
        py::array_t<float> y({static_cast<py::ssize_t>(n), py::ssize_t{2}});
        auto ym = y.mutable_unchecked<2>();
        for (py::ssize_t i = 0; i < n; ++i) {
          ym(i, 0) = r.click[static_cast<size_t>(i)];
          ym(i, 1) = r.purchase[static_cast<size_t>(i)];
        }
        return py::make_tuple(x, y);
      },
      py::arg("first_row"), py::arg("n"), py::arg("seed"), py::arg("vocab_sizes"), py::arg("num_dense"));

  m.def(
      "export_onnx",
      [](std::shared_ptr<models::MultiTaskModel> model, const std::string& path) {
#ifdef RECHUB_WITH_ONNX
        py::gil_scoped_release nogil;
        rechub::exporter::export_onnx(*model, path);
#else
        (void)model;
        (void)path;
        RECHUB_FAIL(
            "this rechub was built without the ONNX exporter (install libonnx-dev, libprotobuf-dev and "
            "protobuf-compiler, then rebuild)");
#endif
      },
      py::arg("model"), py::arg("path"));
  m.attr("has_onnx") =
#ifdef RECHUB_WITH_ONNX
      true;
#else
      false;
#endif

  m.def("set_num_threads", [](int n) {
    RECHUB_CHECK(n > 0, "set_num_threads: n must be positive, got " << n);
    omp_set_num_threads(n);
  });
  m.def("get_num_threads", []() { return omp_get_max_threads(); });
}
