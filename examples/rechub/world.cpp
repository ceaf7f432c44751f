// The process group of a `rechub train` started by mpirun (one rank per process), and how an error
// on one rank ends them all.
#include <iostream>
#include <memory>

#include "examples/rechub/cli.h"

namespace rechub::cli {

namespace {
std::shared_ptr<dist::Communicator>& world_slot() {
  static std::shared_ptr<dist::Communicator> w;
  return w;
}
}  // namespace

std::shared_ptr<dist::Communicator> cli_world() {
  auto& w = world_slot();
  if (!w) w = dist::make_world();
  return w;
}

void end_world_on_error(const std::string& message) {
  auto& w = world_slot();
  // The other ranks may be waiting in a collective for this one: MPI_Abort ends the whole job
  // (mpirun exits non-zero and reports which rank aborted).
  if (w && w->size() > 1) w->abort(1, message);
}

void leave_world() { world_slot().reset(); }

}  // namespace rechub::cli
