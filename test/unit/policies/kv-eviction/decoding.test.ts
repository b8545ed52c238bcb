/**
 * kvpress's "every method through every wrapper": each eviction method runs
 * through decoding-time compression on a simulated multi-layer cache with real
 * softmax attention statistics, generating far past its budget.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { shouldCompress } from '../../../../src/policies/kv-eviction/decoding.js';
import { layerKeep, planLayerEviction } from '../../../../src/policies/kv-eviction/plan.js';
import { keptPositions } from '../../../../src/policies/positions.js';
import { evictionMethods, type Policy } from '../../../../src/policies/registry.js';
import type { LayerKvView } from '../../../../src/policies/types.js';
import { assertValidPlan, attention, gatherEntries, gatherPerHead, policyOf, randomArray, rng, sumRows } from '../helpers/synthetic-layer.js';

const H = 2;
const G = 2;
const D = 8;
const LAYERS = 3;
const W = 4;

/** One layer of one sequence as a runtime would keep it. */
class SimLayer {
  keys: Float32Array = new Float32Array(0);
  /** RoPE positions (renumbered when rolling). */
  positions: Int32Array = new Int32Array(0);
  /** True token positions, for the causal mask and the checks. */
  original: Int32Array = new Int32Array(0);
  accumulated: Float32Array = new Float32Array(0);
  length = 0;

  append(key: Float32Array, pos: number, ropePos: number): void {
    const n = this.length;
    const keys = new Float32Array((n + 1) * H * D);
    keys.set(this.keys);
    keys.set(key, n * H * D);
    const grow = <T extends Int32Array | Float32Array>(src: T, value: number, make: (len: number) => T): T => {
      const out = make(H * (n + 1));
      for (let h = 0; h < H; h++) {
        out.set(src.subarray(h * n, (h + 1) * n), h * (n + 1));
        out[h * (n + 1) + n] = value;
      }
      return out;
    };
    this.positions = grow(this.positions, ropePos, (l) => new Int32Array(l));
    this.original = grow(this.original, pos, (l) => new Int32Array(l));
    this.accumulated = grow(this.accumulated, 0, (l) => new Float32Array(l));
    this.keys = keys;
    this.length = n + 1;
  }

  /** Attention of these queries over the cache, [H, G, nq, n]. */
  attend(queries: Float32Array, queryPositions: Int32Array): Float32Array {
    return attention(queries, queryPositions, this.keys, this.original, H, G, D);
  }

  view(layer: number, recent: { q: Float32Array; pos: Int32Array }): LayerKvView {
    const n = this.length;
    const w = Math.min(W, recent.pos.length, n);
    const nq = recent.pos.length;
    const windowRows = this.attend(recent.q.subarray((nq - w) * H * G * D), recent.pos.subarray(nq - w));
    const last = new Float32Array(H * G * n);
    for (let r = 0; r < H * G; r++) last.set(windowRows.subarray((r * w + w - 1) * n, (r * w + w) * n), r * n);
    return {
      layer,
      numLayers: LAYERS,
      numKvHeads: H,
      groupSize: G,
      headDim: D,
      length: n,
      positions: this.positions,
      keys: this.keys,
      values: this.keys,
      accumulatedAttention: this.accumulated,
      windowAttention: windowRows,
      window: w,
      lastQueryAttention: last,
    };
  }

  compact(policy: Policy, view: LayerKvView, contextTokens: number): boolean {
    const plan = planLayerEviction(policy, view, contextTokens);
    if (plan === null) return false;
    const kept = plan[0]!.length;
    assert.equal(assertValidPlan(plan, this.length, kept), null);
    assert.equal(kept, layerKeep(policy, view, contextTokens));
    this.keys = gatherEntries(this.keys, H, D, plan);
    this.positions = keptPositions(policy.positions ?? 'original', this.positions, this.length, plan);
    this.original = gatherPerHead(this.original, this.length, plan, (l) => new Int32Array(l));
    this.accumulated = gatherPerHead(this.accumulated, this.length, plan, (l) => new Float32Array(l));
    this.length = kept;
    return true;
  }
}

function run(
  policy: Policy,
  prompt: number,
  steps: number,
  seed: number,
): { layers: SimLayer[]; maxLength: number; compressions: number; lengths: number[][] } {
  const next = rng(seed);
  const layers = Array.from({ length: LAYERS }, () => new SimLayer());
  const compressEvery = policy.params.compressEvery as number;
  const history: { q: Float32Array; pos: Int32Array } = { q: new Float32Array(0), pos: new Int32Array(0) };
  const addQuery = (q: Float32Array, pos: number) => {
    const keep = Math.min(W, history.pos.length + 1);
    const qs = new Float32Array(keep * H * G * D);
    qs.set(history.q.subarray(history.q.length - (keep - 1) * H * G * D), 0);
    qs.set(q, (keep - 1) * H * G * D);
    const ps = new Int32Array(keep);
    ps.set(history.pos.subarray(history.pos.length - (keep - 1)), 0);
    ps[keep - 1] = pos;
    history.q = qs;
    history.pos = ps;
  };
  let maxLength = 0;
  let compressions = 0;
  const lengths: number[][] = [];
  const token = (pos: number) => {
    const q = randomArray(H * G * D, next);
    addQuery(q, pos);
    for (const layer of layers) {
      const ropePos = policy.positions === 'rolling' ? layer.length : pos;
      layer.append(randomArray(H * D, next), pos, ropePos);
      const att = layer.attend(q, Int32Array.of(pos));
      const acc = sumRows(att, H, G, 1, layer.length);
      for (let i = 0; i < acc.length; i++) layer.accumulated[i]! += acc[i]!;
    }
  };
  for (let pos = 0; pos < prompt; pos++) token(pos);
  // End of prefill: every eviction policy compresses once.
  layers.forEach((layer, l) => {
    if (layer.compact(policy, layer.view(l, history), prompt)) compressions++;
  });
  for (let step = 1; step <= steps; step++) {
    token(prompt + step - 1);
    maxLength = Math.max(maxLength, ...layers.map((x) => x.length));
    if (shouldCompress(step, { compressEvery })) {
      layers.forEach((layer, l) => {
        if (layer.compact(policy, layer.view(l, history), prompt + step)) compressions++;
      });
      lengths.push(layers.map((x) => x.length));
    }
  }
  return { layers, maxLength, compressions, lengths };
}

t.test('every eviction method through decoding-time compression: bounded cache, generation far past the budget', async () => {
  const methods = evictionMethods();
  assert.deepEqual(methods.map((m) => m.method).sort(), ['h2o', 'knorm', 'pyramidkv', 'snapkv', 'streaming-llm', 'tova']);
  const budget = 16;
  const every = 4;
  const prompt = 40;
  const steps = 120;
  for (const m of methods) {
    const params: Record<string, unknown> = { budget, compressEvery: every };
    if (m.method === 'snapkv' || m.method === 'pyramidkv') Object.assign(params, { observationWindow: W, kernelSize: 3 });
    const policy = policyOf(m.method, 'kv-eviction', params);
    const { layers, maxLength, compressions, lengths } = run(policy, prompt, steps, 17);
    const what = `${m.method}: lengths after compressions ${JSON.stringify(lengths.slice(-3))}`;
    assert.equal(compressions, LAYERS * (1 + steps / every), what);
    const perLayer = layers.map((layer, l) =>
      layerKeep(policy, { ...layer.view(l, { q: randomArray(H * G * D, rng(1)), pos: Int32Array.of(prompt + steps) }), length: 10_000 }, prompt + steps),
    );
    // After each compression the layers hold exactly their budgets (the pyramid's differ by layer, sum to the total).
    for (const row of lengths) assert.deepEqual(row, perLayer, what);
    assert.equal(
      perLayer.reduce((a, b) => a + b, 0),
      budget * LAYERS,
      what,
    );
    // Between compressions the cache grows by at most compressEvery entries.
    assert.ok(maxLength <= Math.max(...perLayer) + every, `${what}: max ${maxLength}`);
    for (const layer of layers) {
      const newest = prompt + steps - 1;
      if (m.method !== 'knorm') {
        // Every method but KNorm protects the newest entries.
        for (let h = 0; h < H; h++) assert.equal(layer.original[h * layer.length + layer.length - 1], newest, what);
      }
      if (m.method === 'streaming-llm') {
        for (let h = 0; h < H; h++) {
          const orig = [...layer.original.subarray(h * layer.length, (h + 1) * layer.length)];
          assert.deepEqual(orig, [0, 1, 2, 3, ...Array.from({ length: layer.length - 4 }, (_, i) => newest - (layer.length - 5) + i)], what);
          assert.deepEqual(
            [...layer.positions.subarray(h * layer.length, (h + 1) * layer.length)],
            Array.from({ length: layer.length }, (_, i) => i),
            'rolling positions',
          );
        }
      } else {
        assert.deepEqual([...layer.positions], [...layer.original], `${m.method} keeps original positions`);
      }
    }
  }
});

t.test('every eviction method with a keep-everything budget never evicts through the wrapper', async () => {
  for (const m of evictionMethods()) {
    const params: Record<string, unknown> = { budget: 1, compressEvery: 1 };
    if (m.method === 'snapkv' || m.method === 'pyramidkv') params.observationWindow = W;
    const { layers, compressions } = run(policyOf(m.method, 'kv-eviction', params), 12, 10, 5);
    assert.equal(compressions, 0, m.method);
    for (const layer of layers) assert.equal(layer.length, 22, m.method);
  }
});

t.test('shouldCompress: every N decode steps; 0 means prefill only', async () => {
  const when = (n: number) => Array.from({ length: 12 }, (_, i) => i).filter((s) => shouldCompress(s, { compressEvery: n }));
  assert.deepEqual(when(4), [4, 8]);
  assert.deepEqual(when(1), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual(when(0), []);
});
