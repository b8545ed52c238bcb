/** log-softmax by the sampling kernel against a float64 reference, on a random 49K row and edge rows. */
import assert from 'node:assert/strict';
import t from 'tap';
import { logSoftmaxRow, logSumExp } from '../../../src/engine/log-softmax.js';
import { logSoftmaxAt } from '../../../src/engine/model-scorer.js';

function reference(row: Float32Array): number {
  let max = -Infinity;
  for (const x of row) max = Math.max(max, x);
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  return max + Math.log(sum);
}

t.test('logSumExp, logSoftmaxRow and logSoftmaxAt agree with float64 to float32 precision', async () => {
  const V = 49152;
  let s = 5;
  const row = Float32Array.from({ length: V }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return -25 + 40 * (s / 2147483648);
  });
  row[17] = -Infinity;
  const lse = reference(row);
  assert.ok(Math.abs(logSumExp(row) - lse) < 1e-6, `${logSumExp(row)} against ${lse}`);
  const lp = logSoftmaxRow(row);
  for (const id of [0, 1, 17, 999, V - 1]) {
    const want = (row[id] ?? 0) - lse;
    if (id === 17) assert.equal(lp[id], -Infinity);
    else assert.ok(Math.abs((lp[id] ?? 0) - want) < 1e-5, `id ${id}: ${lp[id]} against ${want}`);
  }
  const two = new Float32Array(2 * V);
  two.set(row, V);
  assert.ok(Math.abs(logSoftmaxAt(two, V, V, 999) - ((row[999] ?? 0) - lse)) < 1e-6);
});

t.test('a NaN or +Infinity logit gives NaN, as before; a one-entry row gives 0', async () => {
  assert.ok(Number.isNaN(logSumExp(Float32Array.from([1, Number.NaN, 2]))));
  assert.ok(Number.isNaN(logSumExp(Float32Array.from([1, Infinity, 2]))));
  assert.equal(logSoftmaxRow(Float32Array.from([3.5]))[0], 0);
});
