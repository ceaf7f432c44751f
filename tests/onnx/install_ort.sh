#!/usr/bin/env bash
# Installs ONNX Runtime for Node (onnxruntime-node, CPU runtime inside the package) into
# build/ort/node_modules (git-ignored), where tests/onnx looks for it. --ignore-scripts: the
# package's install script fetches GPU binaries from a host these machines cannot reach.
# A failure is reported, not fatal: the ONNX test then fails under CI=true and says why.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir="$root/build/ort"
version=1.30.0
if [ -f "$dir/node_modules/onnxruntime-node/package.json" ] &&
   grep -q "\"version\": \"$version\"" "$dir/node_modules/onnxruntime-node/package.json"; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "install_ort.sh: npm not found (apt-get install nodejs npm): the ONNX Runtime test will fail" >&2
  exit 0
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name": "rechub-ort", "private": true}' > "$dir/package.json"
echo "installing onnxruntime-node@$version into $dir"
if ! (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund "onnxruntime-node@$version" >/dev/null); then
  echo "install_ort.sh: npm install onnxruntime-node failed: the ONNX Runtime test will fail" >&2
fi
exit 0
