// ONNX Runtime side of bench/serving/run.sh: latency and throughput of an exported model
// (rechub export) in onnxruntime-node's CPU runtime, on rows of the same shape as bench_serving.
//   node ort_serving.js <node_modules> <model.onnx> latency <batches 1,16,256,4096> <intra-op threads> <seconds>
//   node ort_serving.js <node_modules> <model.onnx> throughput <batch> <intra-op threads> <seconds>
// Prints one JSON line per configuration (microseconds per call, every call timed on its own).
'use strict';
const path = require('path');

const VOCAB = [100000, 50000, 20000, 5000, 1000, 100, 10, 4];  // bench_serving's (Ali-CCP-shaped) fields

async function main() {
  const [modulesDir, onnxPath, mode, sizes, threads, seconds] = process.argv.slice(2);
  const ort = require(path.join(modulesDir, 'onnxruntime-node'));
  const session = await ort.InferenceSession.create(onnxPath, {
    intraOpNumThreads: Number(threads),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const feeds = (n) => {
    const f = {};
    session.inputNames.forEach((name, k) => {
      const ids = new BigInt64Array(n);
      for (let i = 0; i < n; ++i) ids[i] = BigInt(Math.floor(rand() * VOCAB[k]));
      f[name] = new ort.Tensor('int64', ids, [n]);
    });
    return f;
  };
  const model = path.basename(onnxPath, '.onnx');
  const now = () => Number(process.hrtime.bigint()) / 1e3;  // microseconds
  if (mode === 'latency') {
    for (const n of sizes.split(',').map(Number)) {
      const f = feeds(n);
      for (let i = 0; i < 3; ++i) await session.run(f);
      const us = [];
      const end = now() + Number(seconds) * 1e6;
      while (now() < end || us.length < 20) {
        const t0 = now();
        await session.run(f);
        us.push(now() - t0);
      }
      us.sort((a, b) => a - b);
      const p = (q) => us[Math.min(us.length - 1, Math.round(q * (us.length - 1)))];
      const total = us.reduce((a, b) => a + b, 0);
      console.log(JSON.stringify({impl: 'onnxruntime', model, mode, batch: n, threads: Number(threads),
                                  calls: us.length, p50_us: +p(0.5).toFixed(1), p99_us: +p(0.99).toFixed(1),
                                  rows_per_s: Math.round(n * us.length / (total / 1e6))}));
    }
  } else {
    const n = Number(sizes);
    const f = feeds(n);
    for (let i = 0; i < 3; ++i) await session.run(f);
    let calls = 0;
    const t0 = now();
    while (now() - t0 < Number(seconds) * 1e6) {
      await session.run(f);
      ++calls;
    }
    const sec = (now() - t0) / 1e6;
    console.log(JSON.stringify({impl: 'onnxruntime', model, mode, batch: n, threads: Number(threads), calls,
                                rows_per_s: Math.round(n * calls / sec)}));
  }
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
