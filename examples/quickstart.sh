#!/usr/bin/env bash
# The README's first command: install what is missing, build in Release, run the main job.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cmake/install_deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc)" --target two_layer_demo
./build/release/examples/two_layer_demo
