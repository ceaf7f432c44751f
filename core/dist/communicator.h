#pragma once
// Communicator: the collective operations data-parallel training needs, over a fixed group of
// processes ("ranks", numbered 0..size-1).
//
//   std::unique_ptr<dist::Communicator> world = dist::make_world();   // MPI under mpirun, else single
//   world->allreduce(grads.data(), n, dist::ReduceOp::sum);           // in place, every rank
//   if (world->rank() == 0) write_outputs();
//
// Two implementations: SingleProcess (size 1; every collective is the identity and copies nothing
// when the buffers are the same) and, when CMake found MPI (RECHUB_WITH_MPI), MpiCommunicator over
// MPI_COMM_WORLD. Every rank must call the same collectives in the same order with matching sizes
// (the usual MPI rule); a mismatch is undefined, as in MPI.
//
// Buffers are host memory here. The element type travels as an Elem tag through one virtual per
// collective, so a device-aware implementation (CUDA-aware MPI, NCCL) adds itself by overriding
// the same few functions and answering `accepts(device)` for device pointers; the typed helpers
// below stay as they are.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rechub/core/device.h"

namespace rechub::dist {

enum class ReduceOp : uint8_t { sum, max, min };
enum class Elem : uint8_t { f32, f64, i64 };
size_t elem_size(Elem e);

template <class T>
constexpr Elem elem_of();
template <>
constexpr Elem elem_of<float>() {
  return Elem::f32;
}
template <>
constexpr Elem elem_of<double>() {
  return Elem::f64;
}
template <>
constexpr Elem elem_of<int64_t>() {
  return Elem::i64;
}

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  // "single", "mpi"
  // Whether buffers on `d` may be passed directly (host memory always).
  virtual bool accepts(Device d) const { return d.is_cpu(); }

  // ---- the primitives (untyped; use the typed helpers below) ----
  // In place: data[i] = op over ranks of data[i].
  virtual void allreduce_raw(void* data, int64_t n, Elem e, ReduceOp op) = 0;
  // recv holds size() blocks of n elements, rank r's block at r*n.
  virtual void allgather_raw(const void* send, int64_t n, void* recv, Elem e) = 0;
  // Rank r contributes counts[r] elements (every rank passes the same counts); recv holds them in
  // rank order.
  virtual void allgatherv_raw(const void* send, const std::vector<int64_t>& counts, void* recv, Elem e) = 0;
  // send holds send_counts[r] elements for rank r, in rank order; recv gets recv_counts[r] from
  // rank r, in rank order (recv_counts usually come from alltoall of the send counts).
  virtual void alltoallv_raw(const void* send, const std::vector<int64_t>& send_counts, void* recv,
                             const std::vector<int64_t>& recv_counts, Elem e) = 0;
  virtual void broadcast_raw(void* data, int64_t n, Elem e, int root) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the job with `code` after printing `message` on this rank's stderr. Used
  // when one rank fails, so the others do not wait forever in a collective.
  [[noreturn]] virtual void abort(int code, const std::string& message) = 0;

  // ---- typed helpers ----
  template <class T>
  void allreduce(T* data, int64_t n, ReduceOp op = ReduceOp::sum) {
    allreduce_raw(data, n, elem_of<T>(), op);
  }
  template <class T>
  T allreduce_one(T v, ReduceOp op = ReduceOp::sum) {
    allreduce_raw(&v, 1, elem_of<T>(), op);
    return v;
  }
  template <class T>
  std::vector<T> allgather(const std::vector<T>& send) {
    std::vector<T> recv(send.size() * static_cast<size_t>(size()));
    allgather_raw(send.data(), static_cast<int64_t>(send.size()), recv.data(), elem_of<T>());
    return recv;
  }
  // Gathers vectors of different lengths; `counts` (optional) receives each rank's length.
  template <class T>
  std::vector<T> allgatherv(const std::vector<T>& send, std::vector<int64_t>* counts = nullptr) {
    std::vector<int64_t> c = allgather(std::vector<int64_t>{static_cast<int64_t>(send.size())});
    int64_t total = 0;
    for (int64_t x : c) total += x;
    std::vector<T> recv(static_cast<size_t>(total));
    allgatherv_raw(send.data(), c, recv.data(), elem_of<T>());
    if (counts) *counts = std::move(c);
    return recv;
  }
  // Every rank sends send_counts[r] elements to rank r; returns what it receives (in rank order)
  // and, in recv_counts, how many came from each rank.
  template <class T>
  std::vector<T> alltoallv(const std::vector<T>& send, const std::vector<int64_t>& send_counts,
                           std::vector<int64_t>* recv_counts = nullptr) {
    std::vector<int64_t> rc = alltoall_counts(send_counts);
    int64_t total = 0;
    for (int64_t x : rc) total += x;
    std::vector<T> recv(static_cast<size_t>(total));
    alltoallv_raw(send.data(), send_counts, recv.data(), rc, elem_of<T>());
    if (recv_counts) *recv_counts = std::move(rc);
    return recv;
  }
  // counts[r] sent to rank r -> what every rank r sends here.
  std::vector<int64_t> alltoall_counts(const std::vector<int64_t>& send_counts);
  template <class T>
  void broadcast(T* data, int64_t n, int root = 0) {
    broadcast_raw(data, n, elem_of<T>(), root);
  }
};

// World size 1. Collectives copy send to recv only when they are different buffers.
std::unique_ptr<Communicator> make_single_process();

// True when this build has the MPI implementation (CMake found MPI).
bool mpi_built();
// True when the process was started by an MPI launcher (OpenMPI's or MPICH's mpirun/mpiexec set
// OMPI_COMM_WORLD_SIZE or PMI_SIZE).
bool launched_by_mpirun();

// The MPI world (initialises MPI on first use, finalises it when the last one is destroyed).
// Throws rechub::Error when this build has no MPI.
std::unique_ptr<Communicator> make_mpi();

// make_mpi() when launched by mpirun in a build with MPI; otherwise the single process. Under
// mpirun in a build without MPI it throws (each process would silently train alone).
std::unique_ptr<Communicator> make_world();

}  // namespace rechub::dist
