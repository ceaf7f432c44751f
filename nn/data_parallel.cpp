#include "rechub/nn/data_parallel.h"

#include <chrono>
#include <cstring>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"
#include "rechub/nn/optim.h"

namespace rechub::nn {

DataParallel::DataParallel(std::shared_ptr<dist::Communicator> comm, std::vector<std::pair<std::string, Tensor>> params,
                           int64_t bucket_elements, std::unordered_set<const TensorImpl*> local)
    : comm_(std::move(comm)), params_(std::move(params)), bucket_(bucket_elements), local_(std::move(local)) {
  RECHUB_CHECK(comm_ != nullptr, "DataParallel: no communicator");
  RECHUB_CHECK(bucket_ > 0, "DataParallel: bucket_elements must be positive, got " << bucket_);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    RECHUB_CHECK(p.device().is_cpu(), "DataParallel: parameter '" << params_[i].first << "' is on " << p.device().str()
                                                                  << "; multi-process training runs on the CPU only");
    RECHUB_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64,
                 "DataParallel: parameter '" << params_[i].first << "' is not f32 or f64");
    index_[p.impl()] = i;
  }
  bn_seconds_at_start_ = dist::batch_stats_seconds();
  if (comm_->size() > 1) {
    bn_scope_ = std::make_unique<dist::BatchStatsGroupScope>(comm_.get());
    grad_scope_ = std::make_unique<dist::LeafGradReducerScope>(
        [this](const std::vector<TensorImpl*>& leaves, std::vector<Tensor>& grads) { reduce(leaves, grads); });
  }
}

DataParallel::~DataParallel() = default;

std::vector<Tensor> DataParallel::global_losses(const std::vector<Tensor>& losses, int64_t rows) {
  if (comm_->size() == 1) return losses;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Tensor> out = dist::global_mean_losses(*comm_, losses, rows);
  stats_.loss_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

DataParallel::Stats DataParallel::stats() const {
  Stats s = stats_;
  s.batchnorm_seconds = dist::batch_stats_seconds() - bn_seconds_at_start_;
  return s;
}

namespace {

// Packs the listed dense gradients (all of one dtype) into buckets, allreduces each, scales by
// 1/N and writes the results as fresh tensors.
template <class T>
void reduce_dense(dist::Communicator& comm, const std::vector<std::pair<Tensor*, const Tensor*>>& items, int64_t bucket,
                  DataParallel::Stats& st) {
  const double inv = 1.0 / static_cast<double>(comm.size());
  size_t i = 0;
  std::vector<T> buf;
  while (i < items.size()) {
    size_t j = i;
    int64_t n = 0;
    // A bucket holds whole parameters; one bigger than the bucket travels alone.
    while (j < items.size() && (j == i || n + items[j].second->numel() <= bucket)) n += items[j++].second->numel();
    buf.assign(static_cast<size_t>(n), T(0));
    int64_t off = 0;
    for (size_t k = i; k < j; ++k) {
      const Tensor& g = *items[k].first;
      const int64_t m = items[k].second->numel();
      if (g.defined()) {
        std::memcpy(buf.data() + off, g.template data<T>(), static_cast<size_t>(m) * sizeof(T));
      }
      off += m;
    }
    comm.allreduce(buf.data(), n);
    ++st.allreduces;
    st.bytes += n * static_cast<int64_t>(sizeof(T));
    off = 0;
    for (size_t k = i; k < j; ++k) {
      const Tensor& p = *items[k].second;
      Tensor out = empty(p.shape(), {.dtype = p.dtype()});
      T* o = out.template data<T>();
      const int64_t m = p.numel();
      for (int64_t e = 0; e < m; ++e)
        o[e] = static_cast<T>(static_cast<double>(buf[static_cast<size_t>(off + e)]) * inv);
      *items[k].first = out;
      off += m;
    }
    i = j;
  }
}

// A row-sparse gradient: every rank's ids and rows, scaled by 1/N, coalesced.
template <class T>
Tensor reduce_sparse(dist::Communicator& comm, const Tensor& g, const Tensor& p, DataParallel::Stats& st) {
  const int64_t d = p.dim() == 2 ? p.size(1) : 1;
  std::vector<int64_t> ids;
  std::vector<T> rows;
  if (g.defined()) {
    ids = g.sparse_indices().to_vector<int64_t>();
    const Tensor v = g.sparse_values();
    rows.assign(v.template data<T>(), v.template data<T>() + v.numel());
  }
  const std::vector<int64_t> all_ids = comm.allgatherv(ids);
  std::vector<T> all_rows = comm.allgatherv(rows);
  st.allreduces += 4;  // two count exchanges and two gathers
  st.bytes += static_cast<int64_t>(ids.size() * sizeof(int64_t) + rows.size() * sizeof(T));
  const double inv = 1.0 / static_cast<double>(comm.size());
  for (T& x : all_rows) x = static_cast<T>(static_cast<double>(x) * inv);
  const int64_t n = static_cast<int64_t>(all_ids.size());
  Tensor idx = from_vector(all_ids, {n});
  Tensor val = empty({n, d}, {.dtype = p.dtype()});
  if (!all_rows.empty()) std::memcpy(val.template data<T>(), all_rows.data(), all_rows.size() * sizeof(T));
  return coalesce_sparse_grad(Tensor::sparse_rows(idx, val, p.shape()));
}

}  // namespace

void DataParallel::reduce(const std::vector<TensorImpl*>& leaves, std::vector<Tensor>& grads) {
  const auto t0 = std::chrono::steady_clock::now();
  NoGradGuard ng;
  const size_t P = params_.size();
  // Which managed parameters have a gradient here (1 dense, 2 row-sparse), and anywhere.
  std::vector<Tensor> mine(P);
  std::vector<int64_t> kind(2 * P, 0);
  std::vector<int64_t> slot(P, -1);
  for (size_t k = 0; k < leaves.size(); ++k) {
    auto it = index_.find(leaves[k]);
    if (it == index_.end() || local_.count(leaves[k])) continue;
    slot[it->second] = static_cast<int64_t>(k);
    if (!grads[k].defined()) continue;
    mine[it->second] = grads[k];
    kind[grads[k].is_sparse() ? P + it->second : it->second] = 1;
  }
  comm_->allreduce(kind.data(), static_cast<int64_t>(2 * P), dist::ReduceOp::max);
  std::vector<std::pair<Tensor*, const Tensor*>> f32, f64;
  for (size_t i = 0; i < P; ++i) {
    if (slot[i] < 0 && (kind[i] || kind[P + i]))
      RECHUB_FAIL("data-parallel training: the gradient of '"
                  << params_[i].first << "' was computed on another rank but not asked for here");
    if (kind[i] && kind[P + i])
      RECHUB_FAIL("data-parallel training: the gradient of '" << params_[i].first
                                                              << "' is dense on one rank and row-sparse on another");
    const Tensor& p = params_[i].second;
    if (kind[P + i]) {
      mine[i] = p.dtype() == DType::f32 ? reduce_sparse<float>(*comm_, mine[i], p, stats_)
                                        : reduce_sparse<double>(*comm_, mine[i], p, stats_);
    } else if (kind[i]) {
      (p.dtype() == DType::f32 ? f32 : f64).emplace_back(&mine[i], &params_[i].second);
    }
  }
  reduce_dense<float>(*comm_, f32, bucket_, stats_);
  reduce_dense<double>(*comm_, f64, bucket_, stats_);
  for (size_t i = 0; i < P; ++i)
    if (slot[i] >= 0 && (kind[i] || kind[P + i])) grads[static_cast<size_t>(slot[i])] = mine[i];
  ++stats_.calls;
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void broadcast_tensors(dist::Communicator& comm, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  if (comm.size() == 1) return;
  NoGradGuard ng;
  for (const auto& [name, t] : tensors) {
    RECHUB_CHECK(t.device().is_cpu(), "broadcast_tensors: '" << name << "' is not on the CPU");
    Tensor h = t;
    switch (t.dtype()) {
      case DType::f32:
        comm.broadcast(h.data<float>(), t.numel());
        break;
      case DType::f64:
        comm.broadcast(h.data<double>(), t.numel());
        break;
      case DType::i64:
        comm.broadcast(h.data<int64_t>(), t.numel());
        break;
      default:
        RECHUB_FAIL("broadcast_tensors: '" << name << "' has a dtype the communicator does not carry");
    }
    h.bump_version();
  }
}

}  // namespace rechub::nn
