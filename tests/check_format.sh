#!/usr/bin/env bash
# Fails when a C++ or CUDA source differs from .clang-format (Debian's clang-format 14).
# Fix with:  git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' | xargs clang-format -i
set -euo pipefail
cd "$(dirname "$0")/.."
cf=${CLANG_FORMAT:-clang-format}
command -v "$cf" >/dev/null || { echo "error: $cf not found (apt-get install clang-format)" >&2; exit 1; }
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' 2>/dev/null || find core kernels nn mtl bench tests examples python \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \))
if ! "$cf" --dry-run -Werror "${files[@]}" 2>/tmp/rechub-format.$$; then
  grep -E '^[^ ].*: (error|warning):' /tmp/rechub-format.$$ | sed 's/:[0-9]*:[0-9]*: .*//' | sort -u | sed 's/^/  not formatted: /' >&2
  rm -f /tmp/rechub-format.$$
  echo "error: the files above differ from .clang-format; run: git ls-files '*.cpp' '*.h' '*.cu' '*.cuh' | xargs $cf -i" >&2
  exit 1
fi
rm -f /tmp/rechub-format.$$
echo "format: ${#files[@]} files match .clang-format"
