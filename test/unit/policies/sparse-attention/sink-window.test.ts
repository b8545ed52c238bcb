/**
 * Sink-window as served: the policy's runtime hands its restriction to the
 * engine's step builder, whose prefill masks are what the graph reads. The
 * whole path is checked against the float64 reference in
 * test/integration/sparse-attention-reference.test.ts.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { StepInputBuilder } from '../../../../src/engine/step-inputs.js';
import { KvPool } from '../../../../src/kv/kv-pool.js';
import { SequenceKv } from '../../../../src/kv/sequence-kv.js';
import { instantiatePolicy } from '../../../../src/policies/methods.js';
import { loadPolicies } from '../../../../src/policies/registry.js';
import { allowed, sinkWindowParams } from '../../../../src/policies/sparse-attention/sink-window.js';
import { fakeSpec } from '../../../helpers/fake-model.js';
import { policyOf } from '../helpers/synthetic-layer.js';

const spec = fakeSpec({ num_hidden_layers: 1 });
const shape = { numLayers: 1, numKvHeads: spec.numKvHeads, headDim: spec.headDim };
const builder = new StepInputBuilder(1, spec.numKvHeads, spec.headDim, { slidingWindow: null });
const params = { sinkTokens: 2, windowTokens: 3 };

function restriction(p: { sinkTokens: number; windowTokens: number }) {
  const r = instantiatePolicy(policyOf('sink-window', 'sparse-attention', p), spec);
  assert.equal(r.batchablePrefill, false, 'a restricted prompt never shares a padded pass');
  const shape = r.prefillShape(true);
  assert.ok(shape.restrict !== null);
  return shape.restrict;
}

/** 1 where a prefill of `n` tokens from position 0 lets query `q` read key `k`. */
function rowOf(n: number, q: number, p: { sinkTokens: number; windowTokens: number }): number[] {
  const kv = new SequenceKv(shape, new KvPool(1 << 30), 64);
  const inputs = builder.prefill(
    kv,
    Array.from({ length: n }, (_, i) => i + 3),
    0,
    { restrict: restriction(p) },
  );
  return [...inputs.newBias.subarray(q * n, (q + 1) * n)].map((v) => (v === 0 ? 1 : 0));
}

t.test('sink-window: in the served prefill mask a query sees the sinks and its recent window, causally', async () => {
  assert.deepEqual(rowOf(12, 9, params), [1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0]);
  assert.deepEqual(rowOf(12, 3, params), [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(rowOf(12, 0, params), [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(rowOf(12, 9, { sinkTokens: 0, windowTokens: 1 }), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
});

t.test('sink-window: a chunk after cached entries gathers only sinks and the window, and its masks agree with the rule', async () => {
  // A chunk of 5 queries at positions 20..24 over 20 cached entries.
  const kv = new SequenceKv(shape, new KvPool(1 << 30), 64);
  const D = spec.headDim;
  const KV = spec.numKvHeads;
  const present = [new Float32Array(KV * 20 * D)];
  kv.append(
    present,
    present,
    0,
    20,
    Array.from({ length: 20 }, (_, i) => i),
  );
  const inputs = builder.prefill(kv, [5, 6, 7, 8, 9], 20, { restrict: restriction(params) });
  const past = inputs.layers[0]!;
  // Only entries some query may read are gathered: the sinks 0, 1 and 18, 19 (query 20's window).
  assert.equal(past.capacity, 4);
  const gathered = [0, 1, 18, 19];
  for (let t = 0; t < 5; t++) {
    const q = 20 + t;
    const seen: number[] = [];
    gathered.forEach((p, i) => {
      const ok = past.bias[t * 4 + i] === 0;
      assert.equal(ok, allowed(q, p, params), `q ${q} k ${p}`);
      if (ok) seen.push(p);
    });
    for (let s = 0; s < 5; s++) {
      const ok = inputs.newBias[t * 5 + s] === 0;
      assert.equal(ok, allowed(q, 20 + s, params), `q ${q} k ${20 + s}`);
      if (ok) seen.push(20 + s);
    }
    // Every query reads exactly sinks + window entries.
    assert.equal(seen.length, 5, `q ${q}`);
  }
  // A window as long as the context is plain causal attention: everything gathered, nothing past blocked.
  const dense = builder.prefill(kv, [5, 6, 7, 8, 9], 20, { restrict: restriction({ sinkTokens: 0, windowTokens: 1000 }) });
  assert.equal(dense.layers[0]!.capacity, 20);
  assert.ok([...dense.layers[0]!.bias].every((v) => v === 0));
  for (let t = 0; t < 5; t++) for (let s = 0; s < 5; s++) assert.equal(dense.newBias[t * 5 + s], s <= t ? 0 : Number.NEGATIVE_INFINITY);
});

t.test('the shipped sink-window policy: 4 sinks, a 1024-token window', async () => {
  const p = sinkWindowParams(loadPolicies('policies').get('sink-window')!);
  assert.deepEqual({ ...p }, { sinkTokens: 4, windowTokens: 1024 });
  assert.equal(allowed(5000, 3, p), true);
  assert.equal(allowed(5000, 4, p), false);
  assert.equal(allowed(5000, 3977, p), true);
  assert.equal(allowed(5000, 3976, p), false);
});
