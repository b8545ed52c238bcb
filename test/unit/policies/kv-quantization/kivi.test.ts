/**
 * KIVI's quantizer and runtime (policies/kv-quantization): round-trip error
 * within half a step of each group's range, keys per channel in whole groups,
 * values per token, the residual left in full precision, the report.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { KvPool } from '../../../../src/kv/kv-pool.js';
import { KV_BLOCK, kvBytesPerToken, SequenceKv } from '../../../../src/kv/sequence-kv.js';
import { advanceLayer, KiviLayerState, maxRoundTripError, packedBytesPerEntry, quantizeRun } from '../../../../src/policies/kv-quantization/kivi-quantizer.js';
import { instantiatePolicy } from '../../../../src/policies/methods.js';
import { parsePolicyFile } from '../../../../src/policies/registry.js';
import { fakeSpec } from '../../../helpers/fake-model.js';

const noise = (i: number): number => Math.sin(i * 12.9898) * 3 + Math.cos(i * 0.37);

t.test('quantizeRun: b-bit codes, error within half a step of the run range, min and max exact', async () => {
  for (const bits of [8, 4, 2]) {
    const x = Float32Array.from({ length: 64 }, (_, i) => noise(i));
    const q = x.slice();
    quantizeRun(q, 0, 64, 1, bits);
    const min = Math.min(...x);
    const max = Math.max(...x);
    const bound = maxRoundTripError(min, max, bits) * (1 + 1e-5);
    const levels = new Set<number>();
    for (let i = 0; i < 64; i++) {
      assert.ok(Math.abs((q[i] ?? 0) - (x[i] ?? 0)) <= bound, `${bits} bits: element ${i}`);
      levels.add(Math.round(((q[i] ?? 0) - min) / ((max - min) / ((1 << bits) - 1))));
    }
    assert.ok(levels.size <= 1 << bits);
    assert.ok(Math.abs(Math.min(...q) - min) < 1e-5 && Math.abs(Math.max(...q) - max) < 1e-5);
  }
  // A strided run touches only its own elements; a constant run is left exact.
  const y = Float32Array.from({ length: 12 }, (_, i) => noise(i));
  const z = y.slice();
  quantizeRun(z, 1, 4, 3, 2);
  for (let i = 0; i < 12; i++) if (i % 3 !== 1) assert.equal(z[i], y[i]);
  const c = new Float32Array(8).fill(0.3);
  quantizeRun(c, 0, 8, 1, 2);
  assert.deepEqual(c, new Float32Array(8).fill(0.3));
});

t.test('advanceLayer: keys per channel in whole groups once residual tokens follow, values per token beyond the residual', async () => {
  const heads = 2;
  const D = 4;
  const capacity = 64;
  const G = 8;
  const R = 4;
  const keys = Float32Array.from({ length: heads * capacity * D }, (_, i) => noise(i));
  const values = Float32Array.from({ length: heads * capacity * D }, (_, i) => noise(i + 7));
  const k0 = keys.slice();
  const v0 = values.slice();
  const state = new KiviLayerState();
  const config = { bits: 2, groupSize: G, residual: R };
  // 11 entries: no key group has 4 newer tokens after it (8 + 4 > 11); 7 values quantized.
  let done = advanceLayer(state, keys, values, { heads, headDim: D, capacity, length: 11 }, config);
  assert.deepEqual(done, { keys: 0, values: 7 });
  assert.deepEqual(keys, k0);
  // 12 entries: the first key group goes; one more value.
  done = advanceLayer(state, keys, values, { heads, headDim: D, capacity, length: 12 }, config);
  assert.deepEqual(done, { keys: 8, values: 1 });
  assert.equal(state.keysQuantized, 8);
  assert.equal(state.valuesQuantized, 8);
  for (let h = 0; h < heads; h++) {
    for (let c = 0; c < D; c++) {
      // Channel c of head h over entries 0..7: its own range, at most 4 levels.
      const idx = Array.from({ length: G }, (_, e) => (h * capacity + e) * D + c);
      const orig = idx.map((i) => k0[i] ?? 0);
      const bound = maxRoundTripError(Math.min(...orig), Math.max(...orig), 2) * (1 + 1e-5);
      assert.ok(new Set(idx.map((i) => keys[i])).size <= 4);
      for (const i of idx) assert.ok(Math.abs((keys[i] ?? 0) - (k0[i] ?? 0)) <= bound);
    }
    for (let e = 0; e < 8; e++) {
      const row = Array.from({ length: D }, (_, c) => (h * capacity + e) * D + c);
      const orig = row.map((i) => v0[i] ?? 0);
      const bound = maxRoundTripError(Math.min(...orig), Math.max(...orig), 2) * (1 + 1e-5);
      for (const i of row) assert.ok(Math.abs((values[i] ?? 0) - (v0[i] ?? 0)) <= bound);
    }
    // The residual (entries 8..11) is untouched.
    for (let e = 8; e < 12; e++) {
      for (let c = 0; c < D; c++) {
        const i = (h * capacity + e) * D + c;
        assert.equal(keys[i], k0[i]);
        assert.equal(values[i], v0[i]);
      }
    }
  }
  // Nothing is quantized twice: another call at the same length does nothing.
  assert.deepEqual(advanceLayer(state, keys, values, { heads, headDim: D, capacity, length: 12 }, config), { keys: 0, values: 0 });
});

t.test('the kivi runtime quantizes in afterPass on an fp16 cache and reports bits, groups and packed bytes', async () => {
  const policy = parsePolicyFile('name: kivi-t\nkind: kv-quantization\nmethod: kivi\nparams: {bits: 4, groupSize: 16, residual: 16}\n', '<test>');
  assert.equal(policy.kind, 'kv-quantization');
  const spec = fakeSpec();
  const rt = instantiatePolicy(policy, spec);
  assert.equal(rt.kind, 'kv-quantization');
  assert.notEqual(rt.prefixCacheBypass, null);
  assert.equal(rt.variant('decode'), 'plain');
  const shape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, dtype: 'fp16' as const };
  const pool = new KvPool(1 << 30);
  assert.ok(pool.tryReserve(KV_BLOCK * kvBytesPerToken(shape)));
  const kv = new SequenceKv(shape, pool, KV_BLOCK);
  const n = 40;
  const per = spec.numKvHeads * n * spec.headDim;
  const present = Array.from({ length: spec.numLayers }, (_, l) => Float32Array.from({ length: per }, (_, i) => noise(i + 1000 * l)));
  kv.append(
    present,
    present,
    0,
    n,
    Array.from({ length: n }, (_, i) => i),
  );
  const before = Array.from(kv.keyBuffer(0));
  rt.afterPass(kv, { phase: 'prefill-end', contextTokens: n, stats: null });
  const details = rt.report().details;
  // 40 entries, residual 16: keys of one 16-token group (16 + 16 <= 40 < 32 + 16), values of 24 tokens, per layer.
  assert.equal(details['quantizedKeyEntries'], 16 * spec.numLayers);
  assert.equal(details['quantizedValueEntries'], 24 * spec.numLayers);
  assert.equal(details['bits'], 4);
  assert.equal(details['packedBytesPerToken'], packedBytesPerEntry(spec.headDim, { bits: 4, groupSize: 16, residual: 16 }) * spec.numLayers * spec.numKvHeads);
  const after = Array.from(kv.keyBuffer(0));
  const cap = kv.capacity(0);
  let changed = 0;
  for (let e = 0; e < n; e++) {
    const i = e * spec.headDim; // head 0, channel 0
    if (after[i] !== before[i]) {
      changed += 1;
      assert.ok(e < 16, `entry ${e} of the residual changed`);
    }
  }
  assert.ok(changed > 0);
  assert.ok(cap >= n);
  kv.release();
});
