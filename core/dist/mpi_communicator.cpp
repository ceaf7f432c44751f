// The MPI implementation of Communicator, compiled when CMake found MPI (RECHUB_WITH_MPI).
#ifdef RECHUB_WITH_MPI
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <iostream>
#include <mutex>

#include "rechub/core/dist/communicator.h"
#include "rechub/core/error.h"

namespace rechub::dist {

namespace {

MPI_Datatype mpi_type(Elem e) {
  switch (e) {
    case Elem::f32:
      return MPI_FLOAT;
    case Elem::f64:
      return MPI_DOUBLE;
    case Elem::i64:
      return MPI_INT64_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return MPI_SUM;
    case ReduceOp::max:
      return MPI_MAX;
    case ReduceOp::min:
      return MPI_MIN;
  }
  return MPI_OP_NULL;
}

int as_int(int64_t n, const char* what) {
  RECHUB_CHECK(n >= 0 && n <= INT_MAX, what << ": " << n << " elements exceed MPI's int count");
  return static_cast<int>(n);
}

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  RECHUB_FAIL(what << " failed: " << std::string(msg, static_cast<size_t>(len)));
}

// MPI is initialised once per process and finalised when the last communicator goes.
std::mutex g_mu;
int g_users = 0;

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    std::lock_guard<std::mutex> lk(g_mu);
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      // Only the thread that builds the communicator calls MPI (OpenMP threads never do).
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    ++g_users;
    // Errors come back as return codes (turned into rechub::Error) instead of aborting silently.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override {
    std::lock_guard<std::mutex> lk(g_mu);
    if (--g_users == 0) {
      int fin = 0;
      MPI_Finalized(&fin);
      if (!fin) MPI_Finalize();
    }
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  void allreduce_raw(void* data, int64_t n, Elem e, ReduceOp op) override {
    if (n == 0) return;
    check(MPI_Allreduce(MPI_IN_PLACE, data, as_int(n, "allreduce"), mpi_type(e), mpi_op(op), MPI_COMM_WORLD),
          "MPI_Allreduce");
  }
  void allgather_raw(const void* send, int64_t n, void* recv, Elem e) override {
    const int c = as_int(n, "allgather");
    check(MPI_Allgather(send, c, mpi_type(e), recv, c, mpi_type(e), MPI_COMM_WORLD), "MPI_Allgather");
  }
  void allgatherv_raw(const void* send, const std::vector<int64_t>& counts, void* recv, Elem e) override {
    RECHUB_CHECK(static_cast<int>(counts.size()) == size_,
                 "allgatherv: " << counts.size() << " counts for " << size_ << " ranks");
    std::vector<int> c(counts.size()), displ(counts.size());
    int64_t off = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      c[r] = as_int(counts[r], "allgatherv");
      displ[r] = as_int(off, "allgatherv");
      off += counts[r];
    }
    check(MPI_Allgatherv(send, c[static_cast<size_t>(rank_)], mpi_type(e), recv, c.data(), displ.data(), mpi_type(e),
                         MPI_COMM_WORLD),
          "MPI_Allgatherv");
  }
  void alltoallv_raw(const void* send, const std::vector<int64_t>& sc, void* recv, const std::vector<int64_t>& rc,
                     Elem e) override {
    RECHUB_CHECK(static_cast<int>(sc.size()) == size_ && static_cast<int>(rc.size()) == size_,
                 "alltoallv: counts for " << sc.size() << "/" << rc.size() << " ranks in a world of " << size_);
    std::vector<int> s(sc.size()), sd(sc.size()), r(rc.size()), rd(rc.size());
    int64_t so = 0, ro = 0;
    for (size_t k = 0; k < sc.size(); ++k) {
      s[k] = as_int(sc[k], "alltoallv"), sd[k] = as_int(so, "alltoallv"), so += sc[k];
      r[k] = as_int(rc[k], "alltoallv"), rd[k] = as_int(ro, "alltoallv"), ro += rc[k];
    }
    check(MPI_Alltoallv(send, s.data(), sd.data(), mpi_type(e), recv, r.data(), rd.data(), mpi_type(e), MPI_COMM_WORLD),
          "MPI_Alltoallv");
  }
  void broadcast_raw(void* data, int64_t n, Elem e, int root) override {
    if (n == 0) return;
    check(MPI_Bcast(data, as_int(n, "broadcast"), mpi_type(e), root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  [[noreturn]] void abort(int code, const std::string& message) override {
    std::cerr << "rank " << rank_ << " of " << size_ << ": " << message << "\n" << std::flush;
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
  }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool mpi_built() { return true; }
std::unique_ptr<Communicator> make_mpi() { return std::make_unique<MpiCommunicator>(); }

}  // namespace rechub::dist
#endif
