#!/usr/bin/env bash
# The README's first command: install what is missing, build in Release, generate an
# Ali-CCP-shaped click/purchase dataset, train MMoE on it and print per-task AUC and LogLoss.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Build and runtime packages only (no PyTorch, no test tools): cmake/install_deps.sh build.
bash cmake/install_deps.sh build
# The tests and benchmarks need GoogleTest and Google Benchmark, which this job does not install.
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DRECHUB_BUILD_TESTS=OFF -DRECHUB_BUILD_BENCH=OFF >/dev/null
cmake --build build/release -j"$(nproc)" --target rechub_cli
rechub=./build/release/examples/rechub/rechub
out=build/quickstart
"$rechub" synth --kind ali-ccp --rows ${ROWS:-400000} --seed 1 --out "$out/data"
"$rechub" train --train "$out/data/ali_ccp_train.csv" --val "$out/data/ali_ccp_val.csv" \
  --test "$out/data/ali_ccp_test.csv" --tasks click,purchase --model mmoe \
  --expert-units 128,64 --num-experts 4 --tower-units 32 --epochs ${EPOCHS:-5} --batch-size 1024 \
  --early-stop 1 --early-stop-task click \
  --out "$out/mmoe"
"$rechub" eval --model "$out/mmoe/model.safetensors" --data "$out/data/ali_ccp_test.csv" --json
