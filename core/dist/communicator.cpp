#include "rechub/core/dist/communicator.h"

#include <cstdlib>
#include <cstring>
#include <iostream>

#include "rechub/core/error.h"

namespace rechub::dist {

size_t elem_size(Elem e) {
  switch (e) {
    case Elem::f32:
      return 4;
    case Elem::f64:
    case Elem::i64:
      return 8;
  }
  return 0;
}

std::vector<int64_t> Communicator::alltoall_counts(const std::vector<int64_t>& send_counts) {
  RECHUB_CHECK(static_cast<int>(send_counts.size()) == size(),
               "alltoallv: " << send_counts.size() << " send counts for " << size() << " ranks");
  // alltoall of one element each is alltoallv with unit counts.
  std::vector<int64_t> ones(static_cast<size_t>(size()), 1), recv(static_cast<size_t>(size()));
  alltoallv_raw(send_counts.data(), ones, recv.data(), ones, Elem::i64);
  return recv;
}

namespace {

class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single"; }
  void allreduce_raw(void*, int64_t, Elem, ReduceOp) override {}
  void allgather_raw(const void* send, int64_t n, void* recv, Elem e) override { copy(send, recv, n, e); }
  void allgatherv_raw(const void* send, const std::vector<int64_t>& counts, void* recv, Elem e) override {
    RECHUB_CHECK(counts.size() == 1, "allgatherv: " << counts.size() << " counts for 1 rank");
    copy(send, recv, counts[0], e);
  }
  void alltoallv_raw(const void* send, const std::vector<int64_t>& sc, void* recv, const std::vector<int64_t>& rc,
                     Elem e) override {
    RECHUB_CHECK(sc.size() == 1 && rc.size() == 1 && sc[0] == rc[0],
                 "alltoallv: a single process sends to itself as much as it receives");
    copy(send, recv, sc[0], e);
  }
  void broadcast_raw(void*, int64_t, Elem, int root) override {
    RECHUB_CHECK(root == 0, "broadcast: root " << root << " in a world of 1");
  }
  void barrier() override {}
  [[noreturn]] void abort(int code, const std::string& message) override {
    std::cerr << message << "\n";
    std::exit(code);
  }

 private:
  static void copy(const void* send, void* recv, int64_t n, Elem e) {
    if (send != recv && n > 0) std::memcpy(recv, send, static_cast<size_t>(n) * elem_size(e));
  }
};

}  // namespace

std::unique_ptr<Communicator> make_single_process() { return std::make_unique<SingleProcess>(); }

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr;
}

std::unique_ptr<Communicator> make_world() {
  if (!launched_by_mpirun()) return make_single_process();
  RECHUB_CHECK(mpi_built(),
               "this process was started by mpirun, but this build of rechub has no MPI (CMake did not find it): "
               "install libopenmpi-dev and rebuild, or run without mpirun");
  return make_mpi();
}

#ifndef RECHUB_WITH_MPI
bool mpi_built() { return false; }
std::unique_ptr<Communicator> make_mpi() {
  RECHUB_FAIL("this build of rechub has no MPI (CMake did not find it): install libopenmpi-dev and rebuild");
}
#endif

}  // namespace rechub::dist
