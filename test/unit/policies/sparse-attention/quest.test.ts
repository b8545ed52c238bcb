/**
 * Quest's served runtime (policies/sparse-attention/quest-runtime.ts): the page
 * bounds and selection sizes it feeds the decoder graph's quest variant. The
 * selection itself runs in the graph and is tested against the float64
 * reference (test/integration/sparse-attention-reference.test.ts).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { KvPool } from '../../../../src/kv/kv-pool.js';
import { SequenceKv } from '../../../../src/kv/sequence-kv.js';
import { instantiatePolicy } from '../../../../src/policies/methods.js';
import type { PolicyRuntime } from '../../../../src/policies/runtime.js';
import { questParams } from '../../../../src/policies/sparse-attention/quest.js';
import { QuestRuntime } from '../../../../src/policies/sparse-attention/quest-runtime.js';
import type { QuestLayerInputs } from '../../../../src/model/step-io.js';
import { fakeSpec } from '../../../helpers/fake-model.js';
import { policyOf, randomArray, rng } from '../helpers/synthetic-layer.js';

const spec = fakeSpec({ num_hidden_layers: 3 });
const KV = spec.numKvHeads;
const D = spec.headDim;

/** A cache of `n` entries with random keys; returns it and its keys per layer as [KV, n, D]. */
function cacheOf(n: number, seed: number): { kv: SequenceKv; keys: Float32Array[]; append(from: number, to: number): void } {
  const next = rng(seed);
  const keys = Array.from({ length: spec.numLayers }, () => randomArray(KV * n * D, next, 2));
  const kv = new SequenceKv({ numLayers: spec.numLayers, numKvHeads: KV, headDim: D }, new KvPool(1 << 30), 512);
  const append = (from: number, to: number): void => {
    const T = to - from;
    const present = keys.map((k) => {
      const a = new Float32Array(KV * T * D);
      for (let h = 0; h < KV; h++) a.set(k.subarray((h * n + from) * D, (h * n + to) * D), h * T * D);
      return a;
    });
    kv.append(
      present,
      present,
      0,
      T,
      Array.from({ length: T }, (_, i) => from + i),
    );
  };
  return { kv, keys, append };
}

function runtime(params: Record<string, unknown>): QuestRuntime {
  const r: PolicyRuntime = instantiatePolicy(policyOf('quest', 'sparse-attention', params), spec);
  assert.ok(r instanceof QuestRuntime);
  return r;
}

t.test("quest: page bounds hold each page's per-channel key min and max, built up as the cache appends", async () => {
  const n = 90;
  const c = cacheOf(n, 21);
  const q = runtime({ pageSize: 8, topPages: 2, denseLayers: 0 });
  for (const [from, to] of [
    [0, 5],
    [5, 9],
    [9, 31],
    [31, 64],
    [64, 90],
  ] as const) {
    c.append(from, to);
    q.afterPass(c.kv, { phase: from === 0 ? 'prefill-chunk' : 'decode', contextTokens: to, stats: null });
    const inputs = q.groupInputs([{ runtime: q, kv: c.kv }]).quest;
    assert.ok(inputs);
    assert.equal(inputs.pageSize, 8);
    for (let l = 0; l < spec.numLayers; l++) {
      const layer: QuestLayerInputs = inputs.layers[l]!;
      const pages = Math.ceil(to / 8);
      for (let h = 0; h < KV; h++) {
        for (let p = 0; p < pages; p++) {
          for (let d = 0; d < D; d++) {
            let lo = Infinity;
            let hi = -Infinity;
            for (let e = p * 8; e < Math.min(to, (p + 1) * 8); e++) {
              const v = c.keys[l]![(h * n + e) * D + d]!;
              lo = Math.min(lo, v);
              hi = Math.max(hi, v);
            }
            const o = (h * layer.pages + p) * D + d;
            assert.equal(layer.min[o], Math.fround(lo), `min l${l} h${h} p${p} d${d} at ${to}`);
            assert.equal(layer.max[o], Math.fround(hi), `max l${l} h${h} p${p} d${d} at ${to}`);
          }
        }
        // The newest page is pinned, pages past the cache are blocked, the rest compete.
        for (let p = 0; p < layer.pages; p++) {
          const want = p === pages - 1 ? Infinity : p < pages ? 0 : -Infinity;
          assert.equal(layer.bias[h * layer.pages + p], want, `bias page ${p} at ${to}`);
        }
      }
    }
  }
});

t.test('quest: pages attended per step: the dense layers all, otherwise topPages plus the newest, or the budget in whole pages', async () => {
  const c = cacheOf(50, 8);
  c.append(0, 50); // 7 pages of 8
  const k = (params: Record<string, unknown>): number[] => {
    const q = runtime(params);
    q.afterPass(c.kv, { phase: 'prefill-end', contextTokens: 50, stats: null });
    return q.groupInputs([{ runtime: q, kv: c.kv }]).quest!.layers.map((l) => l.k);
  };
  assert.deepEqual(k({ pageSize: 8, topPages: 1, denseLayers: 1 }), [7, 2, 2]);
  assert.deepEqual(k({ pageSize: 8, topPages: 6, denseLayers: 0 }), [7, 7, 7]);
  assert.deepEqual(k({ pageSize: 8, budget: 1, denseLayers: 0 }), [7, 7, 7]);
  // 25% of 50 entries = 12.5 -> 13 tokens -> 2 pages.
  assert.deepEqual(k({ pageSize: 8, budget: 0.25, denseLayers: 2 }), [7, 7, 2]);
  const q = runtime({ pageSize: 8, topPages: 1, denseLayers: 1 });
  q.afterPass(c.kv, { phase: 'prefill-end', contextTokens: 50, stats: null });
  q.groupInputs([{ runtime: q, kv: c.kv }]);
  const report = q.report();
  // Layer 0 reads all 50, layers 1 and 2 read 2 pages (16 entries): 82 / 150.
  assert.ok(Math.abs(Number(report.details['attendedRatio']) - 82 / 150) < 1e-12);
});

t.test('quest: decode on the quest graph batched by page size, prefill dense on the plain graph; the shipped policy', async () => {
  const q = runtime({ pageSize: 16, budget: 0.25 });
  assert.deepEqual([q.variant('prefill'), q.variant('decode'), q.batchKey], ['plain', 'quest', 'page-16']);
  assert.equal(q.boundsCache, false, 'Quest never evicts: the whole context is reserved');
  const policy = policyOf('quest', 'sparse-attention', { budget: 0.25 });
  assert.deepEqual({ ...questParams(policy) }, { budget: 0.25, pageSize: 16, denseLayers: 2 });
  assert.throws(() => questParams(policyOf('knorm', 'kv-eviction', {})), /not a quest policy/);
});

t.test("quest: a batch gathers each sequence's bounds padded to the longest, padding pages blocked", async () => {
  const a = cacheOf(40, 1);
  const b = cacheOf(20, 2);
  a.append(0, 40);
  b.append(0, 20);
  const qa = runtime({ pageSize: 8, topPages: 1, denseLayers: 0 });
  const qb = runtime({ pageSize: 8, topPages: 1, denseLayers: 0 });
  qa.afterPass(a.kv, { phase: 'prefill-end', contextTokens: 40, stats: null });
  qb.afterPass(b.kv, { phase: 'prefill-end', contextTokens: 20, stats: null });
  const layer = qa.groupInputs([
    { runtime: qa, kv: a.kv },
    { runtime: qb, kv: b.kv },
  ]).quest!.layers[1]!;
  assert.equal(layer.pages, 5);
  const bias = (row: number, h: number): number[] => [...layer.bias.subarray((row * KV + h) * 5, (row * KV + h + 1) * 5)];
  assert.deepEqual(bias(0, 0), [0, 0, 0, 0, Infinity]);
  assert.deepEqual(bias(1, 1), [0, 0, Infinity, -Infinity, -Infinity]);
  assert.throws(
    () =>
      qa.groupInputs([
        { runtime: qa, kv: a.kv },
        { runtime: instantiatePolicy(undefined, spec), kv: b.kv },
      ]),
    /mixes Quest and other runtimes/,
  );
});
