// Runs exported ONNX models in ONNX Runtime (onnxruntime-node, CPU) for tests/onnx: reads a JSON
// list of cases {onnx, inputs: {name: {type: "int64"|"float32", dims, data}}, outputs: [names]}
// and writes, per case, {output name: [values]}.
//   node run_ort.js <node_modules folder> <cases.json> <results.json>
// Exit code 3: onnxruntime-node cannot be loaded (the test reports how to install it).
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [modulesDir, casesPath, resultsPath] = process.argv.slice(2);
  let ort;
  try {
    ort = require(path.join(modulesDir, 'onnxruntime-node'));
  } catch (e) {
    console.error(`cannot load onnxruntime-node from ${modulesDir}: ${e.message}`);
    process.exit(3);
  }
  const cases = JSON.parse(fs.readFileSync(casesPath, 'utf8'));
  const results = [];
  for (const c of cases) {
    const session = await ort.InferenceSession.create(c.onnx, {intraOpNumThreads: 1});
    const feeds = {};
    for (const [name, t] of Object.entries(c.inputs)) {
      const data = t.type === 'int64' ? BigInt64Array.from(t.data.map((x) => BigInt(x))) : Float32Array.from(t.data);
      feeds[name] = new ort.Tensor(t.type, data, t.dims);
    }
    const out = await session.run(feeds);
    const r = {};
    for (const name of c.outputs) {
      if (!(name in out)) throw new Error(`${c.onnx}: no output '${name}' (has ${Object.keys(out).join(', ')})`);
      const t = out[name];
      if (t.dims.length !== 1) throw new Error(`${c.onnx}: output '${name}' has dims [${t.dims}], expected [batch]`);
      r[name] = Array.from(t.data, Number);
    }
    results.push(r);
  }
  fs.writeFileSync(resultsPath, JSON.stringify(results));
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
