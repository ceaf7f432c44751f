#pragma once
// The world communicator of a test binary run under mpirun (tests/dist): built once by its main.
#include "rechub/core/dist/communicator.h"

namespace rechub::test {
dist::Communicator& world();
}
