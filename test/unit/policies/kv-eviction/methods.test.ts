/**
 * Each eviction method on hand-built attention patterns keeps what its paper
 * says, and with "keep everything" params keeps every entry.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { planLayerEviction, layerKeep } from '../../../../src/policies/kv-eviction/plan.js';
import { planKeep } from '../../../../src/policies/kv-eviction/select.js';
import { addPooled } from '../../../../src/policies/kv-eviction/pooling.js';
import { score as snapkvScore } from '../../../../src/policies/kv-eviction/snapkv.js';
import { evictionMethods } from '../../../../src/policies/registry.js';
import type { KeepPlan } from '../../../../src/policies/types.js';
import { attention, makeView, policyOf, randomArray, rng, sumRows } from '../helpers/synthetic-layer.js';

function rows(plan: KeepPlan | null): number[][] {
  assert.ok(plan !== null, 'expected an eviction');
  return plan.map((r) => [...r]);
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

t.test('streaming-llm keeps exactly the sinks and the most recent entries', async () => {
  const policy = policyOf('streaming-llm', 'kv-eviction', { budget: 10, sinkTokens: 4 });
  const view = makeView({ numKvHeads: 2, length: 50 });
  assert.deepEqual(rows(planLayerEviction(policy, view, 50)), [
    [0, 1, 2, 3, 44, 45, 46, 47, 48, 49],
    [0, 1, 2, 3, 44, 45, 46, 47, 48, 49],
  ]);
  // Sinks are the first entries by position, also after an earlier eviction left gaps.
  const positions = Int32Array.from([0, 1, 2, 3, 30, 31, 32, 33, 34, 35, 36, 37]);
  const later = makeView({ numKvHeads: 1, length: 12, positions });
  assert.deepEqual(rows(planLayerEviction(policy, later, 38)), [[0, 1, 2, 3, 6, 7, 8, 9, 10, 11]]);
});

t.test('h2o keeps the heavy-hitter columns plus the recent window', async () => {
  const n = 20;
  const acc = new Float32Array(2 * n).fill(0.1);
  for (const j of [3, 7, 11]) acc[j] = 5 + j; // head 0's heavy hitters
  for (const j of [2, 5, 9]) acc[n + j] = 5 + j; // head 1's
  acc[19] = 0; // the newest entry has barely been attended to yet, but is recent
  const policy = policyOf('h2o', 'kv-eviction', { budget: 6, recentFraction: 0.5 });
  const view = makeView({ numKvHeads: 2, length: n, accumulatedAttention: acc });
  assert.deepEqual(rows(planLayerEviction(policy, view, n)), [
    [3, 7, 11, 17, 18, 19],
    [2, 5, 9, 17, 18, 19],
  ]);
  assert.throws(() => planLayerEviction(policy, makeView({ numKvHeads: 2, length: n }), n), /no accumulatedAttention/);
});

t.test('h2o on real accumulated attention keeps the key the later queries attend to', async () => {
  const next = rng(3);
  const h = 1;
  const d = 8;
  const n = 40;
  // Queries share a direction u; entry 13's key points along it, so every later query attends to it.
  const u = randomArray(d, next);
  const keys = randomArray(n * h * d, next, 0.3);
  const queries = randomArray(n * h * d, next, 0.3);
  for (let i = 0; i < n; i++) for (let c = 0; c < d; c++) queries[i * d + c]! += 0.5 * u[c]!;
  for (let c = 0; c < d; c++) keys[13 * d + c] = 3 * u[c]!;
  const positions = Int32Array.from(range(0, n));
  const att = attention(queries, positions, keys, positions, h, 1, d);
  const view = makeView({ numKvHeads: h, headDim: d, length: n, keys, accumulatedAttention: sumRows(att, h, 1, n, n) });
  const plan = rows(planLayerEviction(policyOf('h2o', 'kv-eviction', { budget: 8 }), view, n));
  assert.ok(plan[0]!.includes(13), `13 not in ${plan[0]}`);
  assert.deepEqual(plan[0]!.slice(-4), [36, 37, 38, 39]);
});

function windowAttention(h: number, g: number, w: number, n: number, hot: (head: number, q: number) => number): Float32Array {
  const att = new Float32Array(h * g * w * n).fill(0.001);
  for (let head = 0; head < h; head++) {
    for (let q = 0; q < g; q++) {
      for (let i = 0; i < w; i++) att[((head * g + q) * w + i) * n + hot(head, q)] = 0.5;
    }
  }
  return att;
}

t.test('snapkv keeps the observation window and what it attends to; pooling keeps the neighbours', async () => {
  const h = 2;
  const g = 2;
  const w = 4;
  const n = 30;
  // Head 0's window (both query heads) attends to 10; head 1's group splits between 4 and 17.
  const att = windowAttention(h, g, w, n, (head, q) => (head === 0 ? 10 : q === 0 ? 4 : 17));
  const view = makeView({ numKvHeads: h, groupSize: g, length: n, windowAttention: att, window: w });
  const max = policyOf('snapkv', 'kv-eviction', { budget: w + 3, observationWindow: w, kernelSize: 3, pooling: 'max' });
  assert.deepEqual(rows(planLayerEviction(max, view, n)), [
    [9, 10, 11, 26, 27, 28, 29],
    // Pooling ties the neighbours with the peak; equal scores go to newer entries.
    [16, 17, 18, 26, 27, 28, 29],
  ]);
  // Average pooling with kernel 5 spreads each peak over two neighbours on each side.
  const wide = policyOf('snapkv', 'kv-eviction', { budget: w + 10, observationWindow: w, kernelSize: 5, pooling: 'avg' });
  const [head0, head1] = rows(planLayerEviction(wide, view, n));
  for (const j of [8, 9, 10, 11, 12, 26, 27, 28, 29]) assert.ok(head0!.includes(j), `head 0 lost ${j}: ${head0}`);
  assert.deepEqual(head1, [2, 3, 4, 5, 6, 15, 16, 17, 18, 19, 26, 27, 28, 29]);
  // Without pooling (kernel 1) the neighbours lose their edge: head 0's second slot goes to the newest background entry.
  const sharp = policyOf('snapkv', 'kv-eviction', { budget: w + 2, observationWindow: w, kernelSize: 1 });
  assert.deepEqual(rows(planLayerEviction(sharp, view, n)), [
    [10, 25, 26, 27, 28, 29],
    [4, 17, 26, 27, 28, 29],
  ]);
  assert.throws(() => planLayerEviction(max, makeView({ numKvHeads: h, groupSize: g, length: n }), n), /no windowAttention/);
});

t.test("snapkv scores: window queries summed, pooled as torch's max_pool1d / avg_pool1d (padding k//2), group summed", async () => {
  const out = new Float32Array(5);
  addPooled(Float64Array.from([0, 0, 3, 0, 0]), 5, 3, 'avg', out, 0);
  assert.deepEqual([...out], [0, 1, 1, 1, 0]);
  out.fill(0);
  addPooled(Float64Array.from([3, 0, 0, 0, 6]), 5, 3, 'avg', out, 0);
  assert.deepEqual([...out], [1, 1, 0, 2, 2]); // padded zeros count in the average
  out.fill(0);
  addPooled(Float64Array.from([-1, -2, -3, -4, -5]), 5, 3, 'max', out, 0);
  assert.deepEqual([...out], [-1, -1, -2, -3, -4]); // padding never wins a max

  const n = 6;
  const w = 2;
  const att = new Float32Array(1 * 2 * w * n);
  // query head 0: window rows [.1 .2 .3 .4 | x x] and [.0 .1 .0 .1 | x x]; query head 1: all .05
  att.set([0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0, 0.1, 0, 0.1, 0.5, 0.5], 0);
  att.fill(0.05, (2 * w * n) / 2);
  const view = makeView({ numKvHeads: 1, groupSize: 2, length: n, windowAttention: att, window: w });
  const s = snapkvScore(view, { budget: 0.5, observationWindow: w, kernelSize: 1, pooling: 'max', compressEvery: 0 });
  const expected = [0.1 + 0.1, 0.3 + 0.1, 0.3 + 0.1, 0.5 + 0.1];
  for (let j = 0; j < 4; j++) assert.ok(Math.abs(s[j]! - expected[j]!) < 1e-6, `score ${j}: ${s[j]} vs ${expected[j]}`);
  assert.equal(s[4], Number.POSITIVE_INFINITY);
  assert.equal(s[5], Number.POSITIVE_INFINITY);
});

t.test('tova drops the entry the newest query attends to least, averaged over all heads', async () => {
  const n = 6;
  // Two KV heads x two query heads. Head rows disagree; the mean is lowest at entry 4.
  const att = Float32Array.from(
    [
      [0.3, 0.2, 0.01, 0.2, 0.09, 0.2],
      [0.3, 0.2, 0.05, 0.2, 0.05, 0.2],
      [0.2, 0.2, 0.3, 0.1, 0.0, 0.2],
      [0.2, 0.2, 0.3, 0.1, 0.0, 0.2],
    ].flat(),
  );
  const view = makeView({ numKvHeads: 2, groupSize: 2, length: n, lastQueryAttention: att });
  const policy = policyOf('tova', 'kv-eviction', { budget: 5 });
  assert.deepEqual(rows(planLayerEviction(policy, view, n)), [
    [0, 1, 2, 3, 5],
    [0, 1, 2, 3, 5],
  ]);
  // KV head 0 alone would drop entry 2 next (0.01, 0.05); the layer mean ranks it (0.165) above entry 3 (0.15).
  assert.deepEqual(rows(planLayerEviction(policyOf('tova', 'kv-eviction', { budget: 4 }), view, n))[0], [0, 1, 2, 5]);
  assert.throws(() => planLayerEviction(policy, makeView({ numKvHeads: 2, groupSize: 2, length: n }), n), /no lastQueryAttention/);
});

t.test('knorm keeps the keys with the lowest L2 norm, per head', async () => {
  const h = 2;
  const d = 4;
  const n = 8;
  const norms = [
    [5, 1, 4, 2, 8, 3, 7, 6],
    [1, 2, 3, 4, 5, 6, 7, 8],
  ];
  const keys = new Float32Array(n * h * d);
  const next = rng(5);
  for (let j = 0; j < n; j++) {
    for (let head = 0; head < h; head++) {
      const v = randomArray(d, next);
      const len = Math.hypot(...v);
      for (let c = 0; c < d; c++) keys[(j * h + head) * d + c] = (v[c]! / len) * norms[head]![j]!;
    }
  }
  const view = makeView({ numKvHeads: h, headDim: d, length: n, keys });
  assert.deepEqual(rows(planLayerEviction(policyOf('knorm', 'kv-eviction', { budget: 3 }), view, n)), [
    [1, 3, 5],
    [0, 1, 2],
  ]);
});

t.test('pyramidkv: SnapKV scores, fewer entries in deeper layers', async () => {
  const h = 1;
  const w = 4;
  const n = 100;
  const att = windowAttention(h, 1, w, n, () => 50);
  const keep = (layer: number) => {
    const view = makeView({ numKvHeads: h, length: n, layer, numLayers: 4, windowAttention: att, window: w });
    return layerKeep(policyOf('pyramidkv', 'kv-eviction', { budget: 0.2, observationWindow: w, kernelSize: 3, beta: 2 }), view, n);
  };
  const budgets = [0, 1, 2, 3].map(keep);
  assert.equal(
    budgets.reduce((a, b) => a + b, 0),
    80,
  );
  for (let l = 1; l < 4; l++) assert.ok(budgets[l]! < budgets[l - 1]!, `${budgets}`);
  const view = makeView({ numKvHeads: h, length: n, layer: 3, numLayers: 4, windowAttention: att, window: w });
  const plan = rows(planLayerEviction(policyOf('pyramidkv', 'kv-eviction', { budget: 0.2, observationWindow: w, kernelSize: 3, beta: 2 }), view, n));
  assert.equal(plan[0]!.length, budgets[3]);
  assert.ok(plan[0]!.includes(50) && plan[0]!.includes(99));
});

t.test('every eviction method with keep-everything params (ratio 1) keeps every entry', async () => {
  const next = rng(9);
  const h = 2;
  const g = 2;
  const d = 8;
  const n = 24;
  const w = 4;
  const keys = randomArray(n * h * d, next);
  const queries = randomArray(n * h * g * d, next);
  const positions = Int32Array.from(range(0, n));
  const perHead = Int32Array.from({ length: h * n }, (_, i) => i % n);
  const att = attention(queries, positions, keys, perHead, h, g, d);
  const lastRows = new Float32Array(h * g * n);
  const windowRows = new Float32Array(h * g * w * n);
  for (let r = 0; r < h * g; r++) {
    lastRows.set(att.subarray((r * n + n - 1) * n, (r * n + n) * n), r * n);
    windowRows.set(att.subarray((r * n + n - w) * n, (r * n + n) * n), r * w * n);
  }
  const methods = evictionMethods();
  assert.equal(methods.length, 6);
  for (const m of methods) {
    for (let layer = 0; layer < 3; layer++) {
      const view = makeView({
        numKvHeads: h,
        groupSize: g,
        headDim: d,
        length: n,
        layer,
        numLayers: 3,
        keys,
        positions: perHead,
        accumulatedAttention: sumRows(att, h, g, n, n),
        windowAttention: windowRows,
        window: w,
        lastQueryAttention: lastRows,
      });
      const params: Record<string, unknown> = { budget: 1 };
      if (m.method === 'snapkv' || m.method === 'pyramidkv') params.observationWindow = w;
      const policy = policyOf(m.method, 'kv-eviction', params);
      assert.equal(planLayerEviction(policy, view, n), null, `${m.method} layer ${layer} evicted at ratio 1`);
      assert.equal(planLayerEviction(policyOf(m.method, 'kv-eviction', { ...params, budget: n }), view, n), null, `${m.method} at budget = length`);
      // The scores are still well formed, and the selector keeps everything at keep = length.
      const scores = m.score(view, policy.params);
      assert.equal(scores.length, h * n);
      const all = planKeep(scores, view, n, m.protect(policy.params, n));
      for (const row of all) assert.deepEqual([...row], range(0, n), m.method);
    }
  }
});
