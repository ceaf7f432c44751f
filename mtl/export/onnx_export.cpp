#include "rechub/mtl/export/onnx_export.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "rechub/core/error.h"
#include "rechub/mtl/models/aitm.h"
#include "rechub/mtl/models/esmm.h"
#include "rechub/mtl/models/mmoe.h"
#include "rechub/mtl/models/ple.h"
#include "rechub/mtl/models/shared_bottom.h"
#include "rechub/mtl/predictor/predictor.h"
#include "rechub/nn/activation.h"
#include "rechub/nn/batchnorm.h"
#include "rechub/nn/dropout.h"
#include "rechub/nn/linear.h"
#include "rechub/nn/mlp.h"

namespace rechub::exporter {
namespace {

constexpr int64_t kOpset = 17;
constexpr int64_t kIrVersion = 8;  // the IR version of opset 17 (ONNX 1.12)
constexpr const char* kDenseInput = "dense";

// One Linear layer with the BatchNorm after it folded in (eval mode), and the activation after.
// Folding in double precision: W' = diag(s) W, b' = (b - mean) s + beta, s = gamma / sqrt(var + eps).
struct DenseLayer {
  int64_t in = 0, out = 0;
  std::vector<double> weight;  // [out, in]
  std::vector<double> bias;    // [out]
  std::string activation;      // ONNX op ("" for identity)
  double alpha = 0.0;          // LeakyRelu slope
};

std::vector<double> values(const Tensor& t) { return t.to(Device::cpu()).to(DType::f64).to_vector<double>(); }

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* g) : g_(g) {}

  // Internal tensor names start with "rechub/" so they cannot meet a feature or task name
  // (those are checked not to start with it).
  std::string fresh(const std::string& hint) { return "rechub/" + hint + "_" + std::to_string(counter_++); }

  std::string floats(const std::string& hint, const std::vector<int64_t>& dims, const std::vector<double>& v) {
    onnx::TensorProto* t = g_->add_initializer();
    const std::string name = fresh(hint);
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    std::string raw(v.size() * sizeof(float), '\0');
    for (size_t i = 0; i < v.size(); ++i) {
      const float f = static_cast<float>(v[i]);
      std::memcpy(raw.data() + i * sizeof(float), &f, sizeof(float));
    }
    t->set_raw_data(raw);
    return name;
  }
  // float32 values taken as they are (the embedding arenas: no round trip through double).
  std::string floats_f32(const std::string& hint, const std::vector<int64_t>& dims, const std::vector<float>& v) {
    onnx::TensorProto* t = g_->add_initializer();
    const std::string name = fresh(hint);
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
    return name;
  }
  std::string ints(const std::string& hint, const std::vector<int64_t>& dims, const std::vector<int64_t>& v) {
    onnx::TensorProto* t = g_->add_initializer();
    const std::string name = fresh(hint);
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    for (int64_t d : dims) t->add_dims(d);
    for (int64_t x : v) t->add_int64_data(x);
    return name;
  }
  std::string scalar_i64(int64_t v) {
    auto it = i64_consts_.find(v);
    if (it != i64_consts_.end()) return it->second;
    return i64_consts_[v] = ints("i64", {}, {v});
  }
  std::string shape(const std::vector<int64_t>& s) { return ints("shape", {static_cast<int64_t>(s.size())}, s); }

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name("rechub/" + op + "_" + std::to_string(counter_++));
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return n;
  }
  std::string op(const std::string& op_type, const std::vector<std::string>& inputs, const std::string& out = "") {
    const std::string o = out.empty() ? fresh(op_type) : out;
    node(op_type, inputs, {o});
    return o;
  }
  static void attr_i(onnx::NodeProto* n, const std::string& name, int64_t v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_f(onnx::NodeProto* n, const std::string& name, float v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

  // Gemm (x W'^T + b') then the activation: [B, in] -> [B, out].
  std::string dense_layer(const std::string& x, const DenseLayer& L, const std::string& hint) {
    const std::string w = floats(hint + ".weight", {L.out, L.in}, L.weight);
    const std::string b = floats(hint + ".bias", {L.out}, L.bias);
    const std::string y = fresh(hint);
    attr_i(node("Gemm", {x, w, b}, {y}), "transB", 1);
    return activate(y, L.activation, L.alpha);
  }
  std::string activate(const std::string& x, const std::string& act, double alpha) {
    if (act.empty()) return x;
    const std::string y = fresh(act);
    onnx::NodeProto* n = node(act, {x}, {y});
    if (act == "LeakyRelu") attr_f(n, "alpha", static_cast<float>(alpha));
    if (act == "Softmax") attr_i(n, "axis", -1);
    return y;
  }

 private:
  onnx::GraphProto* g_;
  int64_t counter_ = 0;
  std::map<int64_t, std::string> i64_consts_;
};

void add_value_info(onnx::ValueInfoProto* v, const std::string& name, int32_t elem_type,
                    const std::vector<int64_t>& fixed_dims) {
  v->set_name(name);
  onnx::TypeProto_Tensor* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  onnx::TensorShapeProto* s = tt->mutable_shape();
  s->add_dim()->set_dim_param("batch");
  for (int64_t d : fixed_dims) s->add_dim()->set_dim_value(d);
}

// The model's modules by dotted path.
class ModuleIndex {
 public:
  explicit ModuleIndex(const models::MultiTaskModel& m) {
    for (auto& [path, mod] : m.named_modules()) modules_[path] = mod;
  }
  template <class M>
  std::shared_ptr<M> get(const std::string& path) const {
    auto it = modules_.find(path);
    RECHUB_CHECK(it != modules_.end(), "ONNX export: the model has no module '" << path << "'");
    auto m = std::dynamic_pointer_cast<M>(it->second);
    RECHUB_CHECK(m != nullptr, "ONNX export: module '" << path << "' is a " << it->second->type_name()
                                                       << ", not the expected layer type");
    return m;
  }

 private:
  std::map<std::string, std::shared_ptr<nn::Module>> modules_;
};

DenseLayer linear_layer(const nn::Linear& lin) {
  DenseLayer L;
  L.in = lin.in_features();
  L.out = lin.out_features();
  L.weight = values(lin.weight());
  L.bias = lin.bias().defined() ? values(lin.bias()) : std::vector<double>(static_cast<size_t>(L.out), 0.0);
  return L;
}

void fold_batch_norm(DenseLayer& L, const nn::BatchNorm1d& bn) {
  RECHUB_CHECK(bn.num_features() == L.out, "ONNX export: BatchNorm " << bn.path() << " has " << bn.num_features()
                                                                     << " features after a Linear of " << L.out);
  const std::vector<double> mean = values(bn.running_mean()), var = values(bn.running_var());
  const std::vector<double> gamma = bn.weight().defined() ? values(bn.weight()) : std::vector<double>(mean.size(), 1.0);
  const std::vector<double> beta = bn.bias().defined() ? values(bn.bias()) : std::vector<double>(mean.size(), 0.0);
  for (int64_t o = 0; o < L.out; ++o) {
    const double s = gamma[o] / std::sqrt(var[o] + bn.eps());
    for (int64_t i = 0; i < L.in; ++i) L.weight[o * L.in + i] *= s;
    L.bias[o] = (L.bias[o] - mean[o]) * s + beta[o];
  }
}

std::string onnx_activation(const nn::Activation& a, double& alpha) {
  switch (a.kind()) {
    case nn::Activation::Kind::relu:
      return "Relu";
    case nn::Activation::Kind::sigmoid:
      return "Sigmoid";
    case nn::Activation::Kind::tanh:
      return "Tanh";
    case nn::Activation::Kind::softmax:
      return "Softmax";
    case nn::Activation::Kind::leaky_relu:
      alpha = 0.01;  // nn::Activation's and the fused kernels' slope (kernels/experts.h)
      return "LeakyRelu";
    case nn::Activation::Kind::identity:
      return "";
  }
  return "";
}

// An nn::MLP in eval mode as a list of Gemm layers: Linear (+ BatchNorm folded) (+ activation);
// Dropout is the identity.
std::vector<DenseLayer> fold_mlp(nn::MLP& mlp) {
  std::vector<DenseLayer> layers;
  nn::Sequential& seq = mlp.layers();
  bool open = false;  // the last layer may still take a BatchNorm or an activation
  for (size_t i = 0; i < seq.size(); ++i) {
    const std::shared_ptr<nn::UnaryModule>& m = seq[i];
    if (auto lin = std::dynamic_pointer_cast<nn::Linear>(m)) {
      layers.push_back(linear_layer(*lin));
      open = true;
    } else if (auto bn = std::dynamic_pointer_cast<nn::BatchNorm1d>(m)) {
      RECHUB_CHECK(open && layers.back().activation.empty(),
                   "ONNX export: BatchNorm " << bn->path() << " does not follow a Linear layer");
      fold_batch_norm(layers.back(), *bn);
    } else if (auto act = std::dynamic_pointer_cast<nn::Activation>(m)) {
      RECHUB_CHECK(open, "ONNX export: activation " << act->path() << " does not follow a Linear layer");
      layers.back().activation = onnx_activation(*act, layers.back().alpha);
      open = false;
    } else if (std::dynamic_pointer_cast<nn::Dropout>(m)) {
      continue;  // inference: no dropout
    } else {
      RECHUB_FAIL("ONNX export: " << m->describe()
                                  << " in an MLP is not supported (PReLU and Dice have no ONNX export yet)");
    }
  }
  return layers;
}

class Exporter {
 public:
  Exporter(const models::MultiTaskModel& model, onnx::GraphProto* g) : model_(model), b_(g), index_(model), g_(g) {}

  void run() {
    const std::string x = inputs();
    const std::string kind = model_.kind();
    if (kind == "shared_bottom")
      shared_bottom(x);
    else if (kind == "esmm")
      esmm(x);
    else if (kind == "mmoe" || kind == "omoe")
      mmoe(x, kind == "omoe");
    else if (kind == "ple")
      ple(x);
    else if (kind == "aitm")
      aitm(x);
    else
      RECHUB_FAIL("ONNX export: unknown model kind '" << kind << "'");
  }

 private:
  // The embedded input [B, sum of embed dims + n_dense]: per sparse feature, its id (out of range:
  // 0, the OOV row) plus its table's offset gathers a row of its arena; then the dense values.
  std::string inputs() {
    const models::Features& f = model_.features();
    std::vector<std::string> pieces;
    if (!f.sparse.empty()) {
      const nn::EmbeddingCollection& emb = model_.embedding();
      RECHUB_CHECK(!emb.sharded(), "ONNX export: the model's embeddings are sharded over "
                                       << emb.shards()->size()
                                       << " ranks (each holds every N-th row): export the checkpoint the run "
                                          "wrote (model.safetensors, whole tables) from one process");
      std::vector<std::string> arenas;
      for (size_t a = 0; a < emb.arenas().size(); ++a) {
        const Tensor& t = emb.arenas()[a];
        arenas.push_back(b_.floats_f32("embedding.arena", {t.size(0), t.size(1)},
                                       t.to(Device::cpu()).to(DType::f32).to_vector<float>()));
      }
      const std::string zero = b_.scalar_i64(0);
      for (const auto& s : f.sparse) {
        add_value_info(g_->add_input(), s.name, onnx::TensorProto::INT64, {});
        const nn::EmbeddingCollection::Slot& slot = emb.slot(s.name);
        const std::string valid =
            b_.op("And", {b_.op("GreaterOrEqual", {s.name, zero}), b_.op("Less", {s.name, b_.scalar_i64(slot.rows)})});
        std::string id = b_.op("Where", {valid, s.name, zero});
        if (slot.offset != 0) id = b_.op("Add", {id, b_.scalar_i64(slot.offset)});
        auto* n = b_.node("Gather", {arenas[static_cast<size_t>(slot.arena)], id}, {b_.fresh("embed." + s.name)});
        GraphBuilder::attr_i(n, "axis", 0);
        pieces.push_back(n->output(0));
      }
    }
    if (!f.dense.empty()) {
      add_value_info(g_->add_input(), kDenseInput, onnx::TensorProto::FLOAT, {static_cast<int64_t>(f.dense.size())});
      pieces.push_back(kDenseInput);
    }
    if (pieces.size() == 1) return pieces[0];
    auto* n = b_.node("Concat", pieces, {b_.fresh("x")});
    GraphBuilder::attr_i(n, "axis", 1);
    return n->output(0);
  }

  std::vector<DenseLayer> mlp_layers(const std::string& path) { return fold_mlp(*index_.get<nn::MLP>(path)); }

  // One MLP on x.
  std::string mlp(const std::string& path, const std::string& x) {
    std::string y = x;
    const std::vector<DenseLayer> layers = mlp_layers(path);
    for (size_t k = 0; k < layers.size(); ++k) y = b_.dense_layer(y, layers[k], path + "." + std::to_string(k));
    return y;
  }

  // MLPs `paths` (same shape, no output layer) on the same x: [B, E*h], expert e in columns
  // [e*h, (e+1)*h) as ops::experts_forward lays them out. The first layers run as one Gemm
  // against the stacked weights; later layers per expert.
  std::string expert_block(const std::vector<std::string>& paths, const std::string& x) {
    std::vector<std::vector<DenseLayer>> ex;
    for (const auto& p : paths) ex.push_back(mlp_layers(p));
    const size_t E = ex.size(), K = ex[0].size();
    RECHUB_CHECK(K >= 1, "ONNX export: expert " << paths[0] << " has no layer");
    DenseLayer first = ex[0][0];
    first.out = 0;
    first.weight.clear();
    first.bias.clear();
    for (size_t e = 0; e < E; ++e) {
      RECHUB_CHECK(ex[e].size() == K && ex[e][0].in == ex[0][0].in && ex[e][0].activation == ex[0][0].activation,
                   "ONNX export: experts " << paths[0] << " and " << paths[e] << " differ in shape");
      first.out += ex[e][0].out;
      first.weight.insert(first.weight.end(), ex[e][0].weight.begin(), ex[e][0].weight.end());
      first.bias.insert(first.bias.end(), ex[e][0].bias.begin(), ex[e][0].bias.end());
    }
    const std::string h0 = b_.dense_layer(x, first, paths[0] + "..layer0");
    if (K == 1 || E == 1) {
      if (E == 1) {
        std::string y = h0;
        for (size_t k = 1; k < K; ++k) y = b_.dense_layer(y, ex[0][k], paths[0] + "." + std::to_string(k));
        return y;
      }
      return h0;
    }
    std::vector<std::string> parts;
    for (size_t e = 0; e < E; ++e) parts.push_back(b_.fresh("split"));
    std::vector<int64_t> sizes;
    for (size_t e = 0; e < E; ++e) sizes.push_back(ex[e][0].out);
    auto* split = b_.node("Split", {h0, b_.ints("split", {static_cast<int64_t>(E)}, sizes)}, parts);
    GraphBuilder::attr_i(split, "axis", 1);
    std::vector<std::string> outs;
    for (size_t e = 0; e < E; ++e) {
      std::string y = parts[e];
      for (size_t k = 1; k < K; ++k) y = b_.dense_layer(y, ex[e][k], paths[e] + "." + std::to_string(k));
      outs.push_back(y);
    }
    auto* cat = b_.node("Concat", outs, {b_.fresh("experts")});
    GraphBuilder::attr_i(cat, "axis", 1);
    return cat->output(0);
  }

  // ops::gate_mix: softmax(x Wg^T + bg) over the E experts of `groups` ([B, E_i*h] each, in
  // order), and the gate-weighted sum [B, h].
  std::string gate_mix(const std::string& gate_path, const std::string& x, const std::vector<std::string>& groups,
                       int64_t E, int64_t h) {
    const std::string logits = b_.dense_layer(x, linear_layer(*index_.get<nn::Linear>(gate_path)), gate_path);
    auto* sm = b_.node("Softmax", {logits}, {b_.fresh("gate")});
    GraphBuilder::attr_i(sm, "axis", 1);
    std::string all = groups[0];
    if (groups.size() > 1) {
      auto* cat = b_.node("Concat", groups, {b_.fresh("gate_experts")});
      GraphBuilder::attr_i(cat, "axis", 1);
      all = cat->output(0);
    }
    const std::string stacked = b_.op("Reshape", {all, b_.shape({-1, E, h})});
    const std::string g3 = b_.op("Reshape", {sm->output(0), b_.shape({-1, 1, E})});
    return b_.op("Reshape", {b_.op("MatMul", {g3, stacked}), b_.shape({-1, h})});
  }

  // Task t's output [B] from its tower's logit [B, 1].
  void task_output(int64_t t, const std::string& logit) {
    const std::string& name = model_.task_names()[static_cast<size_t>(t)];
    const bool binary = model_.task_types()[static_cast<size_t>(t)] == data::TaskType::binary;
    const std::string p = binary ? b_.op("Sigmoid", {logit}) : logit;
    b_.op("Reshape", {p, b_.shape({-1})}, name);
    add_value_info(g_->add_output(), name, onnx::TensorProto::FLOAT, {});
  }

  static std::vector<std::string> numbered(const std::string& prefix, int64_t first, int64_t count) {
    std::vector<std::string> v;
    for (int64_t i = first; i < first + count; ++i) v.push_back(prefix + std::to_string(i));
    return v;
  }

  void shared_bottom(const std::string& x) {
    const std::string z = mlp("bottom_mlp", x);
    for (int64_t t = 0; t < model_.num_tasks(); ++t) task_output(t, mlp("towers." + std::to_string(t), z));
  }

  void esmm(const std::string& x0) {
    const auto& c = dynamic_cast<const models::ESMM&>(model_).config();
    const std::string x = c.hidden_units.empty() ? x0 : mlp("bottom_mlp", x0);
    const std::string pcvr = b_.op("Sigmoid", {mlp("tower_cvr", x)});
    const std::string pctr = b_.op("Sigmoid", {mlp("tower_ctr", x)});
    const std::vector<std::string> names = {model_.task_names()[0], "cvr", model_.task_names()[1]};
    const std::vector<std::string> probs = {pctr, pcvr, b_.op("Mul", {pctr, pcvr})};
    for (size_t i = 0; i < 3; ++i) {
      b_.op("Reshape", {probs[i], b_.shape({-1})}, names[i]);
      add_value_info(g_->add_output(), names[i], onnx::TensorProto::FLOAT, {});
    }
  }

  void mmoe(const std::string& x, bool one_gate) {
    const auto& c = dynamic_cast<const models::MMoE&>(model_).config();
    const int64_t E = c.num_experts, h = c.expert_units.back();
    const std::string experts = expert_block(numbered("experts.", 0, E), x);
    std::string shared;
    for (int64_t t = 0; t < model_.num_tasks(); ++t) {
      std::string mixed;
      if (one_gate) {
        if (shared.empty()) shared = gate_mix("gate", x, {experts}, E, h);
        mixed = shared;
      } else {
        mixed = gate_mix("gates." + std::to_string(t), x, {experts}, E, h);
      }
      task_output(t, mlp("towers." + std::to_string(t), mixed));
    }
  }

  void ple(const std::string& x) {
    const auto& c = dynamic_cast<const models::PLE&>(model_).config();
    const int64_t T = model_.num_tasks(), ns = c.num_experts, nsh = c.num_shared_experts, h = c.expert_units.back();
    std::vector<std::string> in(static_cast<size_t>(T + 1), x);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string level = "cgc_layers." + std::to_string(l) + ".";
      std::vector<std::string> specific;
      for (int64_t t = 0; t < T; ++t)
        specific.push_back(expert_block(numbered(level + "experts_specific.", t * ns, ns), in[static_cast<size_t>(t)]));
      const std::string shared = expert_block(numbered(level + "experts_shared.", 0, nsh), in[static_cast<size_t>(T)]);
      std::vector<std::string> out;
      for (int64_t t = 0; t < T; ++t)
        out.push_back(gate_mix(level + "gates_specific." + std::to_string(t), in[static_cast<size_t>(t)],
                               {specific[static_cast<size_t>(t)], shared}, ns + nsh, h));
      if (l + 1 < c.num_layers) {
        std::vector<std::string> all = specific;
        all.push_back(shared);
        out.push_back(gate_mix(level + "gate_shared", in[static_cast<size_t>(T)], all, T * ns + nsh, h));
      }
      in = out;
    }
    for (int64_t t = 0; t < T; ++t) task_output(t, mlp("towers." + std::to_string(t), in[static_cast<size_t>(t)]));
  }

  // AITM::attend: softmax over the two scores <Q u_i, K u_i> / sqrt(d), then the weighted V u_i.
  std::string attend(const std::string& path, const std::string& own, const std::string& info, int64_t d) {
    auto proj = [&](const std::string& layer, const std::string& u) {
      return b_.dense_layer(u, linear_layer(*index_.get<nn::Linear>(path + "." + layer)), path + "." + layer);
    };
    const std::string axes = b_.ints("axes", {1}, {1});
    const std::string scale = b_.floats("scale", {}, {1.0 / std::sqrt(static_cast<double>(d))});
    auto score = [&](const std::string& u) {
      auto* n = b_.node("ReduceSum", {b_.op("Mul", {proj("q_layer", u), proj("k_layer", u)}), axes}, {b_.fresh("s")});
      GraphBuilder::attr_i(n, "keepdims", 1);
      return b_.op("Mul", {n->output(0), scale});
    };
    auto* cat = b_.node("Concat", {score(own), score(info)}, {b_.fresh("scores")});
    GraphBuilder::attr_i(cat, "axis", 1);
    auto* sm = b_.node("Softmax", {cat->output(0)}, {b_.fresh("w")});
    GraphBuilder::attr_i(sm, "axis", 1);
    const std::string w0 = b_.fresh("w0"), w1 = b_.fresh("w1");
    auto* split = b_.node("Split", {sm->output(0), b_.ints("split", {2}, {1, 1})}, {w0, w1});
    GraphBuilder::attr_i(split, "axis", 1);
    return b_.op("Add", {b_.op("Mul", {w0, proj("v_layer", own)}), b_.op("Mul", {w1, proj("v_layer", info)})});
  }

  void aitm(const std::string& x) {
    const auto& c = dynamic_cast<const models::AITM&>(model_).config();
    const int64_t T = model_.num_tasks(), d = c.hidden_units.back();
    std::vector<std::string> z;
    for (int64_t t = 0; t < T; ++t) z.push_back(mlp("bottoms." + std::to_string(t), x));
    for (int64_t t = 1; t < T; ++t) {
      const std::string info = mlp("info_gates." + std::to_string(t - 1), z[static_cast<size_t>(t - 1)]);
      z[static_cast<size_t>(t)] = attend("aits." + std::to_string(t - 1), z[static_cast<size_t>(t)], info, d);
    }
    for (int64_t t = 0; t < T; ++t) task_output(t, mlp("towers." + std::to_string(t), z[static_cast<size_t>(t)]));
  }

  const models::MultiTaskModel& model_;
  GraphBuilder b_;
  ModuleIndex index_;
  onnx::GraphProto* g_;
};

void check_names(const models::MultiTaskModel& model) {
  std::set<std::string> seen;
  auto add = [&](const std::string& n, const char* what) {
    RECHUB_CHECK(
        n.rfind("rechub/", 0) != 0,
        "ONNX export: " << what << " '" << n << "' starts with 'rechub/', the prefix of the graph's own names");
    RECHUB_CHECK(seen.insert(n).second, "ONNX export: the " << what << " name '" << n
                                                            << "' is used twice among the graph's inputs and outputs "
                                                               "(inputs: sparse feature names and 'dense'; outputs: "
                                                               "task names, and 'cvr' for ESMM); rename it");
  };
  for (const auto& n : onnx_input_names(model)) add(n, "input");
  for (const auto& n : onnx_output_names(model)) add(n, "output");
}

}  // namespace

std::vector<std::string> onnx_input_names(const models::MultiTaskModel& model) {
  std::vector<std::string> v;
  for (const auto& s : model.features().sparse) v.push_back(s.name);
  if (!model.features().dense.empty()) v.push_back(kDenseInput);
  return v;
}

std::vector<std::string> onnx_output_names(const models::MultiTaskModel& model) {
  if (model.kind() == "esmm") return {model.task_names()[0], "cvr", model.task_names()[1]};
  return model.task_names();
}

std::string onnx_model_bytes(const models::MultiTaskModel& model, const OnnxExportOptions& options) {
  check_names(model);
  onnx::ModelProto m;
  m.set_ir_version(kIrVersion);
  m.set_producer_name("rechub");
  m.set_producer_version("0.1.0");
  m.set_model_version(1);
  m.set_doc_string("rechub " + model.kind() +
                   " model. Inputs: int64 [batch] ids per sparse feature (0 = out of vocabulary; an id outside "
                   "the vocabulary reads row 0), 'dense' float [batch, n_dense] normalised as the preprocessor "
                   "does. Outputs: [batch] per task, probabilities for binary tasks, values for regression.");
  onnx::OperatorSetIdProto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name("rechub_" + model.kind());
  Exporter(model, g).run();
  for (const auto& [k, v] : options.metadata.items()) {
    onnx::StringStringEntryProto* e = m.add_metadata_props();
    e->set_key(k);
    e->set_value(v.is_string() ? v.get<std::string>() : v.dump());
  }
  try {
    onnx::checker::check_model(m);
  } catch (const std::exception& e) {
    RECHUB_FAIL("ONNX export: ONNX's checker rejects the " << model.kind() << " graph: " << e.what());
  }
  std::string bytes;
  RECHUB_CHECK(m.SerializeToString(&bytes), "ONNX export: protobuf could not serialize the model");
  return bytes;
}

void export_onnx(const models::MultiTaskModel& model, const std::string& path, const OnnxExportOptions& options) {
  const std::string bytes = onnx_model_bytes(model, options);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    RECHUB_CHECK(out, "ONNX export: cannot write " << tmp);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      RECHUB_FAIL("ONNX export: writing " << tmp << " failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    RECHUB_FAIL("ONNX export: cannot rename " << tmp << " to " << path);
  }
}

CheckpointExport export_checkpoint_onnx(const std::string& checkpoint_path, const std::string& onnx_path) {
  const trainer::Predictor p(checkpoint_path);
  OnnxExportOptions o;
  o.metadata["rechub.kind"] = p.model().kind();
  o.metadata["rechub.config"] = p.model().config_json();
  o.metadata["rechub.checkpoint"] = checkpoint_path;
  CheckpointExport r{.onnx_path = onnx_path, .preprocessor_path = {}};
  if (p.has_preprocessor()) {
    const std::string stem =
        onnx_path.size() > 5 && onnx_path.ends_with(".onnx") ? onnx_path.substr(0, onnx_path.size() - 5) : onnx_path;
    r.preprocessor_path = stem + ".preprocessor.json";
    // The file name only: it lies beside the model wherever the pair is copied.
    o.metadata["rechub.preprocessor"] = std::filesystem::path(r.preprocessor_path).filename().string();
  }
  export_onnx(p.model(), onnx_path, o);
  if (p.has_preprocessor()) p.preprocessor().save(r.preprocessor_path);
  return r;
}

}  // namespace rechub::exporter
