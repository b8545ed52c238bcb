import t from 'tap';
import assert from 'node:assert/strict';
import { layerBudgets } from '../../../../src/policies/kv-eviction/pyramidkv.js';

const sum = (a: Int32Array): number => a.reduce((x, y) => x + y, 0);

function assertNonIncreasing(a: Int32Array): void {
  for (let l = 1; l < a.length; l++) assert.ok(a[l]! <= a[l - 1]!, `layer ${l}: ${[...a]}`);
}

t.test('pyramid: linear from bottom to top, top = window + (avg - window) / beta, sum = total', async () => {
  // 32 layers, 320 per layer on average, window 64, beta 20 (the reference defaults).
  const b = layerBudgets(320 * 32, 32, { observationWindow: 64, beta: 20 });
  assert.equal(sum(b), 320 * 32);
  assertNonIncreasing(b);
  assert.equal(b[31], 64 + Math.floor(256 / 20)); // 76 (+ rounding remainder goes to the bottom)
  assert.equal(b[0], 64 + Math.floor(2 * 256 - 256 / 20) + 1);
  // Strictly decreasing where the slope exceeds one entry per layer.
  for (let l = 1; l < 32; l++) assert.ok(b[l]! < b[l - 1]!, `${[...b]}`);
});

t.test('pyramid sums to the total for many shapes, and never exceeds the length', async () => {
  for (const layers of [1, 2, 3, 5, 12, 30]) {
    for (const avg of [1, 7, 40, 100, 333]) {
      for (const beta of [1, 2, 20]) {
        const length = 400;
        const b = layerBudgets(avg * layers, layers, { observationWindow: 8, beta }, length);
        assert.equal(sum(b), avg * layers, `layers ${layers} avg ${avg} beta ${beta}: ${[...b]}`);
        assertNonIncreasing(b);
        for (const x of b) assert.ok(x >= 0 && x <= length);
        if (layers > 1 && avg > 8 && beta > 1) assert.ok(b[0]! > b[layers - 1]!, `${[...b]}`);
      }
    }
  }
});

t.test('pyramid: the bottom is capped at the length (the top rises to keep the sum); at avg = length all layers keep all', async () => {
  const capped = layerBudgets(90 * 4, 4, { observationWindow: 10, beta: 20 }, 100);
  assert.equal(capped[0], 100);
  assert.equal(sum(capped), 360);
  assertNonIncreasing(capped);
  assert.deepEqual([...layerBudgets(100 * 4, 4, { observationWindow: 10, beta: 20 }, 100)], [100, 100, 100, 100]);
});

t.test('pyramid: average within the window falls back to uniform', async () => {
  assert.deepEqual([...layerBudgets(30, 4, { observationWindow: 32, beta: 20 })], [8, 8, 7, 7]);
});

t.test('pyramid rejects nonsense', async () => {
  assert.throws(() => layerBudgets(10, 0, { observationWindow: 4, beta: 20 }), /numLayers/);
  assert.throws(() => layerBudgets(10.5, 2, { observationWindow: 4, beta: 20 }), /total/);
  assert.throws(() => layerBudgets(10, 2, { observationWindow: 4, beta: 0.5 }), /beta/);
});
