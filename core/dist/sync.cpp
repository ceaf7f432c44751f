#include "rechub/core/dist/sync.h"

#include <chrono>

#include "rechub/core/autograd.h"
#include "rechub/core/error.h"
#include "rechub/core/ops.h"

namespace rechub::dist {

namespace {
thread_local double t_bn_seconds = 0;
struct Timed {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~Timed() { t_bn_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};
thread_local Communicator* t_bn_group = nullptr;
thread_local const LeafGradReducer* t_reducer = nullptr;
}  // namespace

Communicator* batch_stats_group() { return t_bn_group; }
BatchStatsGroupScope::BatchStatsGroupScope(Communicator* g) : prev_(t_bn_group) {
  t_bn_group = g && g->size() > 1 ? g : nullptr;
}
BatchStatsGroupScope::~BatchStatsGroupScope() { t_bn_group = prev_; }

double batch_stats_seconds() { return t_bn_seconds; }

int64_t global_mean_var(Communicator& group, int64_t rows, double* mean, double* var, int64_t C) {
  const Timed timed;
  // [rows, mean[0..C), var[0..C)] from every rank, combined in rank order (the same on every rank).
  std::vector<double> mine(static_cast<size_t>(1 + 2 * C));
  mine[0] = static_cast<double>(rows);
  for (int64_t c = 0; c < C; ++c)
    mine[static_cast<size_t>(1 + c)] = mean[c], mine[static_cast<size_t>(1 + C + c)] = var[c];
  const std::vector<double> all = group.allgather(mine);
  const size_t stride = mine.size();
  const int N = group.size();
  double M = 0;
  for (int r = 0; r < N; ++r) M += all[static_cast<size_t>(r) * stride];
  RECHUB_CHECK(M > 0, "BatchNorm: the global batch is empty");
  for (int64_t c = 0; c < C; ++c) {
    double m = 0;
    for (int r = 0; r < N; ++r) {
      const double* p = all.data() + static_cast<size_t>(r) * stride;
      m += p[0] * p[1 + c];
    }
    m /= M;
    // Chan et al.: M2 = Σ_r n_r (v_r + (m_r - m)^2).
    double m2 = 0;
    for (int r = 0; r < N; ++r) {
      const double* p = all.data() + static_cast<size_t>(r) * stride;
      const double d = p[1 + c] - m;
      m2 += p[0] * (p[1 + C + c] + d * d);
    }
    mean[c] = m;
    var[c] = m2 / M;
  }
  return static_cast<int64_t>(M);
}

void global_column_sums(Communicator& group, double* a, double* b, int64_t C) {
  const Timed timed;
  std::vector<double> buf(static_cast<size_t>(2 * C));
  for (int64_t c = 0; c < C; ++c) buf[static_cast<size_t>(c)] = a[c], buf[static_cast<size_t>(C + c)] = b ? b[c] : 0.0;
  group.allreduce(buf.data(), 2 * C);
  for (int64_t c = 0; c < C; ++c) {
    a[c] = buf[static_cast<size_t>(c)];
    if (b) b[c] = buf[static_cast<size_t>(C + c)];
  }
}

const LeafGradReducer* leaf_grad_reducer() { return t_reducer; }
LeafGradReducerScope::LeafGradReducerScope(LeafGradReducer r) : prev_(t_reducer), mine_(std::move(r)) {
  t_reducer = mine_ ? &mine_ : nullptr;
}
LeafGradReducerScope::~LeafGradReducerScope() { t_reducer = prev_; }

std::vector<Tensor> global_mean_losses(Communicator& group, const std::vector<Tensor>& losses, int64_t rows) {
  const size_t T = losses.size();
  std::vector<double> buf(T + 1);
  for (size_t t = 0; t < T; ++t) {
    RECHUB_CHECK(losses[t].defined() && losses[t].numel() == 1, "global_mean_losses: loss " << t << " is not a scalar");
    RECHUB_CHECK(losses[t].device().is_cpu(), "global_mean_losses: multi-process training runs on the CPU only (loss "
                                                  << t << " is on " << losses[t].device().str() << ")");
    buf[t] = static_cast<double>(rows) * losses[t].item();
  }
  buf[T] = static_cast<double>(rows);
  group.allreduce(buf.data(), static_cast<int64_t>(T + 1));
  const double M = buf[T];
  RECHUB_CHECK(M > 0, "global_mean_losses: the global batch is empty");
  const double scale = static_cast<double>(group.size()) * static_cast<double>(rows) / M;
  std::vector<Tensor> out;
  out.reserve(T);
  for (size_t t = 0; t < T; ++t) {
    Tensor v = full(losses[t].shape(), buf[t] / M, {.dtype = losses[t].dtype()});
    out.push_back(record(v, "global_mean_loss", {losses[t]}, [scale](const Tensor& g, const std::vector<bool>&) {
      return std::vector<Tensor>{scale == 1.0 ? g : ops::mul(g, scale)};
    }));
  }
  return out;
}

}  // namespace rechub::dist
