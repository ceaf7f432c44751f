#!/usr/bin/env bash
# Installs the Debian packages rechub needs, only those missing (run as root on Debian 12).
#   bash cmake/install_deps.sh build   the main job: compilers and the libraries the library and the
#                                      rechub command link (examples/quickstart.sh)
#   bash cmake/install_deps.sh test    (default) also the test suite's: GoogleTest, Google Benchmark,
#                                      OpenBLAS (bench_gemm's comparison), the reference packages
#                                      (PyTorch, scikit-learn, pandas), clang and its sanitizer/fuzzer
#                                      runtimes, clang-format, ONNX and protobuf, Node.js, OpenMPI
#                                      and the Python package's build tools
set -euo pipefail
what=${1:-test}
build=(build-essential cmake pkg-config libeigen3-dev nlohmann-json3-dev libzstd-dev zlib1g-dev libcli11-dev)
test=(libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev
      python3 python3-numpy python3-torch python3-sklearn python3-pandas
      clang clang-format libclang-rt-14-dev libomp-dev
      libprotobuf-dev protobuf-compiler libonnx-dev python3-onnx nodejs  # nodejs: npm installs onnxruntime-node (tests/onnx/install_ort.sh)
      libopenmpi-dev openmpi-bin  # multi-process training (core/dist, tests/dist)
      pybind11-dev python3-dev python3-pytest python3-setuptools python3-venv python3-pip python3-wheel)  # the Python package (python/)
case "$what" in
  build) pkgs=("${build[@]}") ;;
  test) pkgs=("${build[@]}" "${test[@]}") ;;
  *) echo "usage: bash cmake/install_deps.sh [build|test] (got '$what')" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing packages (${missing[*]}) and not root; install them with apt-get" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
