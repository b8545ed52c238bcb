/**
 * The WebAssembly passes of sampling against a float64 reference: the largest
 * logit (NaN caught), the weights exp((l - max) / T) and their sum, padding that
 * never counts, and the draw over the weights. The committed bytes must be the
 * compiled softmax-kernel.wat.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { drawWeighted, SoftmaxKernel } from '../../../../src/engine/sampling/softmax-kernel.js';

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

t.test('max is the largest logit whatever the size (padding never counts); NaN anywhere is NaN', async () => {
  for (const size of [1, 7, 8, 13, 49155]) {
    const k = new SoftmaxKernel(size);
    const rnd = seeded(size);
    for (let i = 0; i < size; i++) k.logits[i] = -50 + 40 * rnd();
    k.logits[size - 1] = 3.25;
    assert.equal(k.max(), 3.25, `size ${size}: the last entry`);
    k.logits[size - 1] = -100;
    assert.ok(k.max() < 3.25);
    k.logits.fill(-Infinity);
    assert.equal(k.max(), -Infinity, `size ${size}: every logit banned`);
    k.logits[Math.floor(size / 2)] = Number.NaN;
    assert.ok(Number.isNaN(k.max()), `size ${size}: NaN`);
    k.logits[Math.floor(size / 2)] = 0;
    k.logits[size - 1] = Infinity;
    assert.equal(k.max(), Infinity);
  }
});

t.test('weights are exp((l - max) / T) within float32 precision, 0 for -Infinity, and their sum is returned', async () => {
  const size = 50001;
  const k = new SoftmaxKernel(size);
  const rnd = seeded(7);
  for (let i = 0; i < size; i++) k.logits[i] = -30 + 45 * rnd();
  k.logits[11] = -Infinity;
  k.logits[12] = -1e30;
  const max = k.max();
  for (const temperature of [0.05, 0.7, 1, 1.5, 4]) {
    const total = k.expWeights(max, temperature);
    let reference = 0;
    let worst = 0;
    for (let i = 0; i < size; i++) {
      const x = ((k.logits[i] ?? 0) - max) / temperature;
      const e = Math.exp(x);
      reference += e;
      const w = k.weights[i] ?? -1;
      if (x > -80) worst = Math.max(worst, Math.abs(w - e) / e);
      else assert.ok(w >= 0 && w <= 1e-34, `T ${temperature}: entry ${i} (x = ${x}) weighs ${w}`);
    }
    // The argument (l - max) / T is float32, as the logits are: 1e-5 relative at x near -80.
    assert.ok(worst < 2e-5, `T ${temperature}: worst relative error ${worst}`);
    assert.ok(Math.abs(total - reference) / reference < 1e-6, `T ${temperature}: sum ${total} against ${reference}`);
    assert.equal(k.weights[11], 0);
    assert.equal(k.weights[12], 0);
  }
});

t.test('drawWeighted walks the cumulative weights, never takes a weight-0 id, and absorbs rounding at the end', async () => {
  const weights = Float32Array.from([1, 0, 3, 0]);
  const counts = [0, 0, 0, 0];
  const n = 400;
  for (let j = 0; j < n; j++) {
    const id = drawWeighted(weights, 4, j / n);
    counts[id] = (counts[id] ?? 0) + 1;
  }
  assert.deepEqual(counts, [100, 0, 300, 0]);
  // A total a little above the weights' own sum (another summation order): the last positive id.
  assert.equal(drawWeighted(weights, 4.000001, 0.9999999), 2);
  assert.throws(() => drawWeighted(new Float32Array(3), 0, 0.5), /every weight is 0/);
});

t.test('the committed bytes are the compiled softmax-kernel.wat', async () => {
  const script = fileURLToPath(new URL('../../../../../tools/build-wasm.mjs', import.meta.url));
  const run = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
});
