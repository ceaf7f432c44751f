// main of the tests that run under mpirun (tests/dist). Every rank runs every test; only rank 0
// prints gtest's report. The exit status is the worst over the ranks, so a failure seen by one rank
// fails the job.
#include <gtest/gtest.h>

#include <memory>

#include "rechub/core/dist/communicator.h"
#include "support/dist_env.h"

namespace {
std::unique_ptr<rechub::dist::Communicator> g_world;
}

rechub::dist::Communicator& rechub::test::world() { return *g_world; }

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  g_world = rechub::dist::make_world();
  if (g_world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  rc = static_cast<int>(g_world->allreduce_one<int64_t>(rc, rechub::dist::ReduceOp::max));
  g_world.reset();
  return rc;
}
