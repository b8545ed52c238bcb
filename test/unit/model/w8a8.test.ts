/**
 * The w8a8 linear (w8a8.ts): per-channel int8 weights, per-token int8 activations through
 * onnxruntime's integer GEMM. The graph is checked against a JavaScript emulation of the same
 * integer arithmetic (exact up to float rounding), and the quantizer against its float weights.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { GraphBuilder } from '../../../src/model/onnx/graph-builder.js';
import { dequantizePerChannel, quantizePerChannel, w8a8Linear, weightRangeBits } from '../../../src/model/compile/w8a8.js';
import { Rng } from '../../../src/model/create/prng.js';
import { runGraphOnce } from '../../../src/runtime/graph-run.js';

function normal(count: number, seed: number, std = 1): Float32Array {
  const w = new Float32Array(count);
  new Rng(seed, 1).fillNormal(w, 0, std);
  return w;
}

/** ONNX QuantizeLinear's rounding: half to even. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** What the graph computes, in JavaScript: y[m][j] = (a_m . w_j) * max|x_m| * s_j. */
function emulate(x: Float32Array, m: number, k: number, codes: Int8Array, scales: Float32Array, n: number): Float64Array {
  const y = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    let absMax = 0;
    for (let i = 0; i < k; i++) absMax = Math.max(absMax, Math.abs(x[r * k + i] ?? 0));
    absMax = Math.fround(Math.max(absMax, 1e-30));
    const scale = Math.fround(absMax / 127);
    const a = new Int32Array(k);
    for (let i = 0; i < k; i++) a[i] = Math.max(-128, Math.min(127, roundHalfEven(Math.fround((x[r * k + i] ?? 0) / scale))));
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let i = 0; i < k; i++) dot += (a[i] ?? 0) * (codes[i * n + j] ?? 0);
      y[r * n + j] = dot * (scales[j] ?? 0) * absMax;
    }
  }
  return y;
}

async function runLinear(x: Float32Array, m: number, k: number, codes: Int8Array, scales: Float32Array, n: number): Promise<Float32Array> {
  const g = new GraphBuilder('w8a8');
  const input = g.input('x', 'float32', ['M', k]);
  const c = g.constant('int8', [k, n], codes, 'codes');
  const s = g.constant('float32', [n], scales, 'scales');
  const out = w8a8Linear(g, input, c, s, g.constant('uint8', [], Uint8Array.of(128), 'zp'));
  g.node('Identity', [out], {}, { outputs: ['y'] });
  g.output('y', 'float32', ['M', n]);
  return runGraphOnce(g.toModelBytes(17), { x: { data: x, dims: [m, k] } }, 'y');
}

t.test('the graph computes the per-token x per-channel integer product (one row, several rows, a row of zeros)', async () => {
  const k = 96;
  const n = 40;
  const w = normal(n * k, 1, 0.05);
  const q = quantizePerChannel(w, n, k, 8);
  for (const m of [1, 5]) {
    const x = normal(m * k, 10 + m);
    if (m > 1) x.fill(0, 2 * k, 3 * k); // row 2 all zeros: no scale, must give zeros, not NaN
    const got = await runLinear(x, m, k, q.codes, q.scales, n);
    const want = emulate(x, m, k, q.codes, q.scales, n);
    let maxErr = 0;
    let maxRef = 0;
    for (let i = 0; i < want.length; i++) {
      assert.ok(Number.isFinite(got[i]), `output ${i} is finite`);
      maxErr = Math.max(maxErr, Math.abs((got[i] ?? 0) - (want[i] ?? 0)));
      maxRef = Math.max(maxRef, Math.abs(want[i] ?? 0));
    }
    assert.ok(maxErr <= 1e-5 * maxRef, `M=${m}: max |graph - emulation| ${maxErr} of ${maxRef}`);
    if (m > 1) for (let j = 0; j < n; j++) assert.equal(got[2 * n + j], 0);
  }
});

t.test('and stays close to the float product it stands for', async () => {
  const k = 256;
  const n = 32;
  const m = 4;
  const w = normal(n * k, 2, 0.05);
  const x = normal(m * k, 3);
  const q = quantizePerChannel(w, n, k, 8);
  const got = await runLinear(x, m, k, q.codes, q.scales, n);
  let maxErr = 0;
  let maxRef = 0;
  for (let r = 0; r < m; r++)
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let i = 0; i < k; i++) dot += (x[r * k + i] ?? 0) * (w[j * k + i] ?? 0);
      maxErr = Math.max(maxErr, Math.abs((got[r * n + j] ?? 0) - dot));
      maxRef = Math.max(maxRef, Math.abs(dot));
    }
  assert.ok(maxErr <= 0.03 * maxRef, `max error ${maxErr} of ${maxRef}`);
});

t.test('per-channel codes: each row spans the range, 7 bits stay within 63, dequantized within half a step', async () => {
  const n = 8;
  const k = 50;
  const w = normal(n * k, 4);
  for (const bits of [8, 7] as const) {
    const q = quantizePerChannel(w, n, k, bits);
    const qmax = bits === 8 ? 127 : 63;
    const back = dequantizePerChannel(q, n, k);
    for (let j = 0; j < n; j++) {
      let rowMax = 0;
      let codeMax = 0;
      for (let i = 0; i < k; i++) {
        rowMax = Math.max(rowMax, Math.abs(w[j * k + i] ?? 0));
        codeMax = Math.max(codeMax, Math.abs(q.codes[i * n + j] ?? 0));
      }
      assert.equal(codeMax, qmax, `row ${j}: the largest weight maps onto the largest code`);
      for (let i = 0; i < k; i++) assert.ok(Math.abs((back[j * k + i] ?? 0) - (w[j * k + i] ?? 0)) <= (rowMax / qmax) * 0.5 + 1e-6);
    }
  }
  const zero = quantizePerChannel(new Float32Array(6), 2, 3, 8);
  assert.deepEqual([...dequantizePerChannel(zero, 2, 3)], [0, 0, 0, 0, 0, 0]);
});

t.test('weight range: 8 bits with VNNI or off x86 Linux, 7 where the uint8 x int8 kernel could saturate', async () => {
  assert.equal(weightRangeBits('processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n'), 8);
  assert.equal(weightRangeBits('flags\t\t: fpu sse avx2 avx_vnni\n'), 8);
  assert.equal(weightRangeBits('flags\t\t: fpu sse avx2 fma\n'), 7);
  assert.equal(weightRangeBits('Features\t: fp asimd asimddp\n'), 8);
  assert.equal(weightRangeBits(null), 8);
});
