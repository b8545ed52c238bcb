import t from 'tap';
import assert from 'node:assert/strict';
import { nthSmallest, planKeep } from '../../../../src/policies/kv-eviction/select.js';
import { assertValidPlan, makeView, rng } from '../helpers/synthetic-layer.js';

t.test('planKeep: top-k per head, ascending, protected sinks and recent window always kept', async () => {
  const n = 12;
  // head 0 prefers entries 5 and 6, head 1 prefers 2 and 9; sinks (0,1) and recent (11) score lowest.
  const scores = new Float32Array(2 * n);
  scores.set([-5, -5, 0.1, 0.2, 0.3, 9, 8, 0.4, 0.5, 0.6, 0.7, -9], 0);
  scores.set([-5, -5, 9, 0.2, 0.3, 0.1, 0.1, 0.4, 0.5, 8, 0.7, -9], n);
  const view = makeView({ numKvHeads: 2, length: n });
  const plan = planKeep(scores, view, 5, { sinkTokens: 2, recentTokens: 1 });
  assert.deepEqual([...plan[0]!], [0, 1, 5, 6, 11]);
  assert.deepEqual([...plan[1]!], [0, 1, 2, 9, 11]);
});

t.test('planKeep: the budget caps protection (sinks first, then the newest); keep >= length keeps all', async () => {
  const n = 10;
  const view = makeView({ numKvHeads: 1, length: n });
  const scores = Float32Array.from({ length: n }, (_, i) => 100 - i);
  assert.deepEqual([...planKeep(scores, view, 3, { sinkTokens: 2, recentTokens: 4 })[0]!], [0, 1, 9]);
  assert.deepEqual([...planKeep(scores, view, 2, { sinkTokens: 4, recentTokens: 4 })[0]!], [0, 1]);
  assert.deepEqual([...planKeep(scores, view, 10, { sinkTokens: 0, recentTokens: 0 })[0]!], [...Array(n).keys()]);
  assert.deepEqual([...planKeep(scores, view, 50, { sinkTokens: 0, recentTokens: 0 })[0]!], [...Array(n).keys()]);
  assert.equal(planKeep(scores, view, 0, { sinkTokens: 2, recentTokens: 2 })[0]!.length, 0);
});

t.test('planKeep: ties go to newer entries, NaN ranks lowest', async () => {
  const view = makeView({ numKvHeads: 1, length: 6 });
  assert.deepEqual([...planKeep(new Float32Array(6).fill(1), view, 2, { sinkTokens: 0, recentTokens: 0 })[0]!], [4, 5]);
  const withNaN = Float32Array.from([1, Number.NaN, 3, Number.NaN, 2, 0]);
  assert.deepEqual([...planKeep(withNaN, view, 3, { sinkTokens: 0, recentTokens: 0 })[0]!], [0, 2, 4]);
});

t.test('planKeep agrees with a full sort on random scores (many heads, many budgets)', async () => {
  const next = rng(7);
  for (let trial = 0; trial < 40; trial++) {
    const n = 1 + Math.floor(next() * 300);
    const heads = 1 + Math.floor(next() * 4);
    // Coarse values force ties.
    const scores = Float32Array.from({ length: heads * n }, () => Math.floor(next() * 20));
    const keep = Math.floor(next() * (n + 2));
    const sinks = Math.floor(next() * 5);
    const recent = Math.floor(next() * 5);
    const plan = planKeep(scores, makeView({ numKvHeads: heads, length: n }), keep, { sinkTokens: sinks, recentTokens: recent });
    const k = Math.min(keep, n);
    assert.equal(assertValidPlan(plan, n, k), null);
    for (let h = 0; h < heads; h++) {
      const s = Math.min(sinks, k);
      const r = Math.min(recent, k - s);
      const free = [...Array(n).keys()].filter((i) => i >= s && i < n - r);
      free.sort((a, b) => scores[h * n + b]! - scores[h * n + a]! || b - a);
      const expected = [...Array(s).keys(), ...free.slice(0, k - s - r), ...Array.from({ length: r }, (_, i) => n - r + i)].sort((a, b) => a - b);
      assert.deepEqual([...plan[h]!], expected, `trial ${trial} head ${h}`);
    }
  }
});

t.test('planKeep rejects unresolved budgets, wrong shapes and out-of-order positions', async () => {
  const view = makeView({ numKvHeads: 1, length: 4 });
  assert.throws(() => planKeep(new Float32Array(4), view, 0.5, { sinkTokens: 0, recentTokens: 0 }), /resolve ratios with resolveBudget first/);
  assert.throws(() => planKeep(new Float32Array(3), view, 2, { sinkTokens: 0, recentTokens: 0 }), /scores has 3 values/);
  const shuffled = makeView({ numKvHeads: 1, length: 4, positions: Int32Array.from([0, 2, 1, 3]) });
  assert.throws(() => planKeep(new Float32Array(4), shuffled, 2, { sinkTokens: 0, recentTokens: 0 }), /ascending position order/);
});

t.test('nthSmallest matches sorting, including long runs of equal values', async () => {
  const next = rng(11);
  for (let trial = 0; trial < 50; trial++) {
    const n = 1 + Math.floor(next() * 500);
    const values = Float32Array.from({ length: n }, () => (trial % 2 === 0 ? Math.floor(next() * 3) : next()));
    const sorted = Float32Array.from(values).sort();
    const p = Math.floor(next() * n);
    assert.equal(nthSmallest(Float32Array.from(values), n, p), sorted[p]);
  }
});
