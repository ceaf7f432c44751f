#include "rechub/core/autograd.h"

#include <algorithm>
#include <atomic>
#include <unordered_map>
#include <unordered_set>

#include "rechub/core/dist/sync.h"
#include "rechub/core/ops.h"
#include "rechub/kernels/cpu/index.h"

namespace rechub {

namespace {
thread_local bool t_grad_enabled = true;
std::atomic<uint64_t> g_next_seq{1};
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }

bool any_requires_grad(std::initializer_list<const Tensor*> ts) {
  if (!t_grad_enabled) return false;
  for (const Tensor* t : ts)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

Tensor record(Tensor out, const char* name, std::vector<Tensor> inputs, BackwardFn fn) {
  if (!t_grad_enabled) return out;
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && t.requires_grad());
  if (!any) return out;
  auto node = std::make_shared<Node>();
  node->seq = g_next_seq.fetch_add(1, std::memory_order_relaxed);
  node->name = name;
  node->input_versions.reserve(inputs.size());
  for (Tensor& t : inputs) {
    node->input_versions.push_back(t.defined() && !t.is_sparse() ? t.version() : 0);
    // Inputs that need no gradient are not kept alive by the graph.
    if (t.defined() && !t.requires_grad()) t = Tensor();
  }
  node->inputs = std::move(inputs);
  node->backward = std::move(fn);
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
  return out;
}

// ---- gradient accumulation ----------------------------------------------------------------------

Tensor accumulate_grad(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  NoGradGuard ng;
  if (!a.is_sparse() && !b.is_sparse()) return ops::add(a, b);
  if (a.is_sparse() && b.is_sparse())
    return Tensor::sparse_rows(ops::concat({a.sparse_indices(), b.sparse_indices()}),
                               ops::concat({a.sparse_values(), b.sparse_values()}), a.shape());
  // dense + sparse: add the rows into a copy of the dense one
  const Tensor& d = a.is_sparse() ? b : a;
  const Tensor& s = a.is_sparse() ? a : b;
  return ops::scatter_add(d, s.sparse_indices(), s.sparse_values());
}

namespace {

Tensor apply_hooks(TensorImpl* t, Tensor g) {
  for (auto& h : t->hooks) {
    Tensor r = h(g);
    if (r.defined()) g = r;
  }
  return g;
}

struct Engine {
  // Every tensor reachable from the outputs through grad_fn edges.
  std::vector<TensorImpl*> nonleaf;  // have a grad_fn
  // Owning references: releasing a node's inputs mid-pass must not free tensors still to visit.
  std::vector<std::shared_ptr<TensorImpl>> keep;
  std::unordered_set<TensorImpl*> seen;
  std::unordered_map<TensorImpl*, bool> needed;
  std::unordered_map<TensorImpl*, Tensor> grads;

  void collect(const std::vector<Tensor>& outputs) {
    std::vector<TensorImpl*> stack;
    for (const Tensor& o : outputs)
      if (seen.insert(o.impl()).second) {
        stack.push_back(o.impl());
        keep.push_back(o.impl_ptr());
      }
    while (!stack.empty()) {
      TensorImpl* t = stack.back();
      stack.pop_back();
      if (!t->grad_fn) continue;
      nonleaf.push_back(t);
      RECHUB_CHECK(!t->grad_fn->released,
                   "backward through op '" << t->grad_fn->name
                                           << "' a second time: its saved tensors were freed by the first pass; pass "
                                              "retain_graph=true to the first backward/grad call");
      for (const Tensor& in : t->grad_fn->inputs)
        if (in.defined() && seen.insert(in.impl()).second) {
          stack.push_back(in.impl());
          keep.push_back(in.impl_ptr());
        }
    }
    // Creation order is a topological order: inputs are older than the op that used them.
    std::sort(nonleaf.begin(), nonleaf.end(),
              [](TensorImpl* a, TensorImpl* b) { return a->grad_fn->seq < b->grad_fn->seq; });
  }

  // needed[t]: a gradient must flow into t (t is a target, or leads to one).
  void mark(const std::function<bool(TensorImpl*)>& is_target) {
    for (TensorImpl* t : seen)
      if (!t->grad_fn) needed[t] = is_target(t);
    for (TensorImpl* t : nonleaf) {
      bool n = is_target(t);
      for (const Tensor& in : t->grad_fn->inputs) n = n || (in.defined() && needed[in.impl()]);
      needed[t] = n;
    }
  }

  void run(bool retain_graph) {
    NoGradGuard ng;
    for (auto it = nonleaf.rbegin(); it != nonleaf.rend(); ++it) {
      TensorImpl* t = *it;
      Node& node = *t->grad_fn;
      auto git = grads.find(t);
      if (!needed[t] || git == grads.end() || !git->second.defined()) continue;
      Tensor g = apply_hooks(t, git->second);
      git->second = g;
      std::vector<bool> needs(node.inputs.size());
      bool any = false;
      for (size_t i = 0; i < node.inputs.size(); ++i) {
        const Tensor& in = node.inputs[i];
        needs[i] = in.defined() && needed[in.impl()];
        any = any || needs[i];
        if (needs[i] && !in.is_sparse() && in.version() != node.input_versions[i])
          RECHUB_FAIL("a tensor used by op '"
                      << node.name << "' (input " << i << ", shape " << shape_str(in.shape())
                      << (in.name().empty() ? "" : ", '" + in.name() + "'")
                      << ") was modified in place after the op ran; its gradient would be wrong");
      }
      if (any) {
        std::vector<Tensor> gin = node.backward(g, needs);
        RECHUB_CHECK(gin.size() == node.inputs.size(), "internal: op '" << node.name << "' returned " << gin.size()
                                                                        << " gradients for " << node.inputs.size()
                                                                        << " inputs");
        for (size_t i = 0; i < gin.size(); ++i) {
          if (!needs[i] || !gin[i].defined()) continue;
          const Tensor& in = node.inputs[i];
          RECHUB_CHECK(gin[i].shape() == in.shape(), "internal: op '" << node.name << "' gradient for input " << i
                                                                      << " has shape " << shape_str(gin[i].shape())
                                                                      << ", expected " << shape_str(in.shape()));
          Tensor& slot = grads[in.impl()];
          slot = accumulate_grad(slot, gin[i]);
        }
      }
      if (!retain_graph) {
        node.backward = nullptr;
        node.inputs.clear();
        node.released = true;
      }
    }
  }
};

Tensor default_grad_output(const Tensor& o) {
  RECHUB_CHECK(o.numel() == 1, "gradient of a tensor of shape " << shape_str(o.shape())
                                                                << " needs an explicit grad_output (only one-element "
                                                                   "outputs get the implicit 1)");
  return ones(o.shape(), {.dtype = o.dtype(), .device = o.device()});
}

void seed(Engine& e, const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs) {
  RECHUB_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(),
               "grad: " << grad_outputs.size() << " grad_outputs given for " << outputs.size() << " outputs");
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& o = outputs[i];
    RECHUB_CHECK(o.defined(), "grad: output " << i << " is undefined");
    RECHUB_CHECK(o.requires_grad(), "grad: output " << i
                                                    << " does not require grad (no input of it requires grad, or "
                                                       "it was computed under NoGradGuard)");
    Tensor g = grad_outputs.empty() || !grad_outputs[i].defined() ? default_grad_output(o) : grad_outputs[i];
    RECHUB_CHECK(g.shape() == o.shape(), "grad: grad_output " << i << " has shape " << shape_str(g.shape())
                                                              << " but the output has " << shape_str(o.shape()));
    Tensor& slot = e.grads[o.impl()];
    slot = accumulate_grad(slot, g);
  }
}

}  // namespace

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, GradOptions opts) {
  std::unordered_set<TensorImpl*> targets;
  for (size_t i = 0; i < inputs.size(); ++i) {
    RECHUB_CHECK(
        inputs[i].defined() && inputs[i].requires_grad(),
        "grad: input " << i << (inputs[i].defined() && !inputs[i].name().empty() ? " ('" + inputs[i].name() + "')" : "")
                       << " does not require grad");
    targets.insert(inputs[i].impl());
  }
  Engine e;
  seed(e, outputs, grad_outputs);
  e.collect(outputs);
  e.mark([&](TensorImpl* t) { return targets.count(t) > 0; });
  e.run(opts.retain_graph);
  std::vector<Tensor> result;
  result.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    TensorImpl* t = inputs[i].impl();
    auto it = e.grads.find(t);
    if (it == e.grads.end() || !it->second.defined()) {
      RECHUB_CHECK(opts.allow_unused, "grad: input "
                                          << i << (inputs[i].name().empty() ? "" : " ('" + inputs[i].name() + "')")
                                          << " is not reachable from the outputs (pass allow_unused=true to "
                                             "get an undefined gradient instead)");
      result.emplace_back();
      continue;
    }
    // Leaves' hooks run here; non-leaf hooks already ran during the pass.
    result.push_back(t->grad_fn ? it->second : apply_hooks(t, it->second));
  }
  // Data-parallel training: the leaves' gradients become the global ones (core/dist/sync.h).
  if (const dist::LeafGradReducer* reduce = dist::leaf_grad_reducer()) {
    std::vector<TensorImpl*> leaves;
    std::vector<Tensor> grads;
    std::vector<size_t> at;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i].impl()->grad_fn) continue;
      leaves.push_back(inputs[i].impl());
      grads.push_back(result[i]);
      at.push_back(i);
    }
    (*reduce)(leaves, grads);
    for (size_t k = 0; k < at.size(); ++k) result[at[k]] = grads[k];
  }
  return result;
}

void backward(const Tensor& loss, const Tensor& grad_output, bool retain_graph) {
  Engine e;
  seed(e, {loss}, {grad_output});
  e.collect({loss});
  e.mark([](TensorImpl* t) { return !t->grad_fn && t->requires_grad; });
  e.run(retain_graph);
  NoGradGuard ng;
  std::vector<TensorImpl*> leaves;
  std::vector<Tensor> leaf_grads;
  for (TensorImpl* t : e.seen) {
    if (t->grad_fn || !t->requires_grad) continue;
    auto it = e.grads.find(t);
    if (it == e.grads.end() || !it->second.defined()) continue;
    leaves.push_back(t);
    leaf_grads.push_back(apply_hooks(t, it->second));
    it->second = Tensor();  // the engine is done with it: the gradient may now have one owner
  }
  // Data-parallel training: the leaves' gradients become the global ones (core/dist/sync.h).
  if (const dist::LeafGradReducer* reduce = dist::leaf_grad_reducer()) (*reduce)(leaves, leaf_grads);
  for (size_t k = 0; k < leaves.size(); ++k) {
    TensorImpl* t = leaves[k];
    Tensor g = std::move(leaf_grads[k]);
    if (!g.defined()) continue;
    Tensor prev(t->grad);
    // Never alias a buffer someone else holds into .grad (the caller's grad_output, a tensor the
    // graph saved): a later in-place update would corrupt it. A gradient nobody else references
    // (its handle and its storage used only here, as for a densified embedding gradient) is
    // taken as it is, like PyTorch's AccumulateGrad: copying it cost as much as producing it.
    const bool owned = !g.is_sparse() && g.impl_ptr().use_count() == 1 && g.impl()->storage.use_count() == 1;
    Tensor acc = prev.defined() ? accumulate_grad(prev, g) : (g.is_sparse() || owned ? g : g.clone());
    t->grad = acc.impl_ptr();
  }
}

}  // namespace rechub
