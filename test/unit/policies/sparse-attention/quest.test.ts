import test from 'node:test';
import assert from 'node:assert/strict';
import { buildPageBounds, extendPageBounds, pageUpperBound, questParams, questSelect, type QuestParams } from '../../../../src/policies/sparse-attention/quest.js';
import { policyOf, randomArray, rng } from '../helpers/synthetic-layer.js';

const dot = (a: Float32Array, ao: number, b: Float32Array, bo: number, d: number): number => {
  let s = 0;
  for (let c = 0; c < d; c++) s += a[ao + c]! * b[bo + c]!;
  return s;
};

test('quest: the page bound is a true upper bound of q.k for every key in the page (random data)', () => {
  const next = rng(21);
  for (let trial = 0; trial < 20; trial++) {
    const h = 1 + Math.floor(next() * 3);
    const g = 1 + Math.floor(next() * 3);
    const d = 2 * (1 + Math.floor(next() * 16));
    const n = 1 + Math.floor(next() * 200);
    const pageSize = 1 + Math.floor(next() * 20);
    const keys = randomArray(n * h * d, next, 2);
    const query = randomArray(h * g * d, next, 2);
    const bounds = buildPageBounds(keys, n, h, d, pageSize);
    for (let kv = 0; kv < h; kv++) {
      for (let q = 0; q < g; q++) {
        for (let j = 0; j < n; j++) {
          const page = Math.floor(j / pageSize);
          const ub = pageUpperBound(query, (kv * g + q) * d, bounds, page, kv);
          const real = dot(query, (kv * g + q) * d, keys, (j * h + kv) * d, d);
          assert.ok(real <= ub + 1e-4 * (1 + Math.abs(ub)), `trial ${trial}: q.k ${real} > bound ${ub}`);
        }
      }
    }
  }
});

test('quest picks the page holding the high-dot-product key, plus the current page, per KV head', () => {
  const next = rng(4);
  const h = 2;
  const g = 2;
  const d = 16;
  const n = 100; // pages of 16: 0..5, the current (partial) page is 6
  const pageSize = 16;
  const keys = randomArray(n * h * d, next, 0.1);
  const query = randomArray(h * g * d, next);
  // KV head 0: entry 37 (page 2) matches its first query head. KV head 1: entry 70 (page 4) matches its second.
  for (let c = 0; c < d; c++) {
    keys[(37 * h + 0) * d + c] = 3 * query[(0 * g + 0) * d + c]!;
    keys[(70 * h + 1) * d + c] = 3 * query[(1 * g + 1) * d + c]!;
  }
  const bounds = buildPageBounds(keys, n, h, d, pageSize);
  const params: QuestParams = { pageSize, topPages: 1, denseLayers: 2 };
  const plan = questSelect({ layer: 2, numKvHeads: h, groupSize: g, headDim: d, length: n }, query, bounds, params);
  assert.ok(plan !== null);
  const page = (p: number, end = (p + 1) * pageSize) => Array.from({ length: end - p * pageSize }, (_, i) => p * pageSize + i);
  assert.deepEqual([...plan[0]!], [...page(2), ...page(6, n)]);
  assert.deepEqual([...plan[1]!], [...page(4), ...page(6, n)]);
  // A token budget of 48 = 3 pages: two chosen plus the current one, the same count for every head.
  const byBudget = questSelect({ layer: 5, numKvHeads: h, groupSize: g, headDim: d, length: n }, query, bounds, { pageSize, budget: 48, denseLayers: 2 });
  assert.ok(byBudget !== null);
  assert.equal(byBudget[0]!.length, 2 * pageSize + 4);
  assert.equal(byBudget[1]!.length, 2 * pageSize + 4);
  assert.ok(byBudget[0]!.includes(37) && byBudget[1]!.includes(70));
});

test('quest: dense layers and budgets covering the cache attend to everything (null)', () => {
  const next = rng(8);
  const keys = randomArray(50 * 4, next);
  const query = randomArray(4, next);
  const bounds = buildPageBounds(keys, 50, 1, 4, 8);
  const view = (layer: number) => ({ layer, numKvHeads: 1, groupSize: 1, headDim: 4, length: 50 });
  assert.equal(questSelect(view(0), query, bounds, { pageSize: 8, topPages: 1, denseLayers: 1 }), null);
  assert.notEqual(questSelect(view(1), query, bounds, { pageSize: 8, topPages: 1, denseLayers: 1 }), null);
  assert.equal(questSelect(view(1), query, bounds, { pageSize: 8, budget: 1, denseLayers: 1 }), null);
  assert.equal(questSelect(view(1), query, bounds, { pageSize: 8, topPages: 6, denseLayers: 1 }), null);
  // The shipped policy validates and carries its params through.
  const policy = policyOf('quest', 'sparse-attention', { budget: 0.25 });
  assert.deepEqual({ ...questParams(policy) }, { budget: 0.25, pageSize: 16, denseLayers: 2 });
  assert.throws(() => questParams(policyOf('knorm', 'kv-eviction', {})), /not a quest policy/);
});

test('quest: page bounds grow incrementally as the cache appends, matching a rebuild', () => {
  const next = rng(13);
  const h = 2;
  const d = 6;
  const keys = randomArray(90 * h * d, next);
  const bounds = buildPageBounds(keys, 5, h, d, 8);
  for (const len of [6, 8, 9, 30, 31, 64, 90]) {
    extendPageBounds(bounds, keys, len);
    const fresh = buildPageBounds(keys, len, h, d, 8);
    const used = Math.ceil(len / 8) * h * d;
    assert.deepEqual([...bounds.min.subarray(0, used)], [...fresh.min.subarray(0, used)], `min at ${len}`);
    assert.deepEqual([...bounds.max.subarray(0, used)], [...fresh.max.subarray(0, used)], `max at ${len}`);
  }
  assert.throws(() => extendPageBounds(bounds, keys, 10), /rebuild them after eviction/);
  const query = randomArray(h * d, next);
  assert.throws(() => questSelect({ layer: 3, numKvHeads: h, groupSize: 1, headDim: d, length: 80 }, query, bounds, { pageSize: 8, topPages: 1, denseLayers: 0 }), /do not match the layer/);
  assert.throws(() => questSelect({ layer: 3, numKvHeads: h, groupSize: 1, headDim: d, length: 90 }, query.subarray(1), bounds, { pageSize: 8, topPages: 1, denseLayers: 0 }), /query has/);
});
