import t from 'tap';
import assert from 'node:assert/strict';
import { selectTop, selectWeightedPrefix, sortRange } from '../../../../src/engine/sampling/selection.js';
import { Xoshiro128 } from '../../../../src/engine/sampling/rng.js';

function referenceOrder(key: Float32Array): number[] {
  return Array.from(key.keys()).sort((a, b) => (key[b] ?? 0) - (key[a] ?? 0) || a - b);
}

t.test('selectTop + sortRange give the m best ids, ties by lowest id', async () => {
  const rng = Xoshiro128.fromSeed(7);
  for (const [n, levels] of [
    [1, 3],
    [2, 2],
    [50, 1000],
    [500, 4],
    [3000, 100000],
    [3000, 2],
  ] as const) {
    const key = new Float32Array(n);
    for (let i = 0; i < n; i++) key[i] = Math.floor(rng.nextFloat() * levels) - levels / 2;
    const ref = referenceOrder(key);
    for (const m of [1, 2, 7, Math.floor(n / 2), n - 1, n]) {
      if (m < 1 || m > n) continue;
      const ids = Int32Array.from({ length: n }, (_, i) => i);
      // Shuffle so the result cannot come from the input order.
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng.nextFloat() * (i + 1));
        const t = ids[i] ?? 0;
        ids[i] = ids[j] ?? 0;
        ids[j] = t;
      }
      selectTop(ids, 0, n, m, key);
      sortRange(ids, 0, m, key);
      assert.deepEqual(Array.from(ids.subarray(0, m)), ref.slice(0, m), `n=${n} levels=${levels} m=${m}`);
      assert.deepEqual(
        Array.from(ids).sort((a, b) => a - b),
        Array.from({ length: n }, (_, i) => i),
        'permutation kept',
      );
    }
  }
});

t.test('selectTop handles sorted and reverse-sorted input', async () => {
  const n = 20000;
  for (const dir of [1, -1]) {
    const key = Float32Array.from({ length: n }, (_, i) => dir * i);
    const ids = Int32Array.from({ length: n }, (_, i) => i);
    selectTop(ids, 0, n, 10, key);
    sortRange(ids, 0, 10, key);
    assert.deepEqual(Array.from(ids.subarray(0, 10)), referenceOrder(key).slice(0, 10));
  }
});

t.test('selectTop works on a sub-range and leaves the rest alone', async () => {
  const key = new Float32Array([9, 1, 5, 3, 7, 2]);
  const ids = new Int32Array([0, 1, 2, 3, 4, 5]);
  selectTop(ids, 2, 6, 2, key);
  assert.deepEqual(Array.from(ids.subarray(0, 2)), [0, 1]);
  assert.deepEqual(Array.from(ids.subarray(2, 4)).sort(), [2, 4]);
});

t.test('selectWeightedPrefix finds the smallest best-first prefix reaching the target mass', async () => {
  const rng = Xoshiro128.fromSeed(99);
  for (const [n, levels] of [
    [1, 3],
    [5, 2],
    [200, 7],
    [5000, 50],
    [20000, 1e6],
  ] as const) {
    const key = new Float32Array(n);
    for (let i = 0; i < n; i++) key[i] = Math.floor(rng.nextFloat() * levels) / 10;
    const weight = Float64Array.from(key, (k) => Math.exp(k));
    const ref = referenceOrder(key);
    const total = weight.reduce((a, b) => a + b, 0);
    for (const frac of [1e-9, 0.1, 0.5, 0.9, 0.999]) {
      const target = frac * total;
      let cum = 0;
      let want = n;
      for (let j = 0; j < n; j++) {
        cum += weight[ref[j] ?? 0] ?? 0;
        if (cum >= target) {
          want = j + 1;
          break;
        }
      }
      const ids = Int32Array.from({ length: n }, (_, i) => n - 1 - i);
      const cut = selectWeightedPrefix(ids, 0, n, key, weight, target);
      assert.equal(cut, want, `n=${n} levels=${levels} frac=${frac}`);
      assert.deepEqual(
        Array.from(ids.subarray(0, cut)).sort((a, b) => a - b),
        ref.slice(0, want).sort((a, b) => a - b),
      );
    }
  }
});
