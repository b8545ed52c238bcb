/** kv-dtype.ts: float16 conversion, and an fp16 SequenceKv's bytes, appends and compaction. */
import assert from 'node:assert/strict';
import t from 'tap';
import { copyKv, fromHalf, kvAsFloat, toHalf } from '../../../src/kv/kv-dtype.js';
import { KvPool } from '../../../src/kv/kv-pool.js';
import { KV_BLOCK, kvBytesPerToken, SequenceKv } from '../../../src/kv/sequence-kv.js';

t.test('toHalf/fromHalf: exact on representable values, half-ulp rounding, overflow and specials', async () => {
  for (const x of [0, 1, -1, 0.5, 2048, 65504, -65504, 2 ** -14, 2 ** -24, 1.5, 3.140625]) assert.equal(fromHalf(toHalf(x)), x, String(x));
  assert.ok(Object.is(fromHalf(toHalf(-0)), -0));
  assert.equal(fromHalf(toHalf(1e6)), Infinity);
  assert.equal(fromHalf(toHalf(-1e6)), -Infinity);
  assert.ok(Number.isNaN(fromHalf(toHalf(NaN))));
  // Round to nearest, ties to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
  assert.equal(fromHalf(toHalf(1 + 2 ** -11)), 1);
  assert.equal(fromHalf(toHalf(1 + 3 * 2 ** -11)), 1 + 2 ** -9);
  // Relative error at most 2^-11 over normal values.
  let worst = 0;
  for (let i = 0; i < 10000; i++) {
    const x = (Math.sin(i * 12.9898) * 43758.5453) % 300;
    if (Math.abs(x) < 2 ** -14) continue;
    worst = Math.max(worst, Math.abs(fromHalf(toHalf(x)) - x) / Math.abs(x));
  }
  assert.ok(worst <= 2 ** -11, `relative error ${worst}`);
});

t.test('an fp16 SequenceKv holds half the bytes, converts on append, and compacts its entries', async () => {
  const shape = { numLayers: 1, numKvHeads: 2, headDim: 4, dtype: 'fp16' as const };
  assert.equal(kvBytesPerToken(shape) * 2, kvBytesPerToken({ ...shape, dtype: 'fp32' }));
  const pool = new KvPool(1 << 30);
  const reserved = 4 * KV_BLOCK;
  assert.ok(pool.tryReserve(reserved * kvBytesPerToken(shape)));
  const kv = new SequenceKv(shape, pool, reserved);
  const n = 100;
  const keys = Float32Array.from({ length: 2 * n * 4 }, (_, i) => i / 8);
  kv.append(
    [keys],
    [keys.map((x) => -x)],
    0,
    n,
    Array.from({ length: n }, (_, i) => i),
  );
  assert.ok(kv.keyBuffer(0) instanceof Uint16Array);
  assert.equal(kv.allocatedBytes, kv.capacity(0) * 2 * 2 * 4 * 2);
  assert.equal(pool.allocatedBytes, kv.allocatedBytes);
  const cap = kv.capacity(0);
  const asFloat = kvAsFloat(kv.keyBuffer(0));
  assert.equal(asFloat[(1 * cap + 3) * 4 + 2], keys[(1 * n + 3) * 4 + 2]);
  const keep = Int32Array.from([0, 5, 99]);
  kv.retain(0, [keep, keep]);
  const kept = kvAsFloat(kv.keyBuffer(0));
  const cap2 = kv.capacity(0);
  for (const [i, e] of [0, 5, 99].entries()) {
    for (let c = 0; c < 4; c++) assert.equal(kept[(1 * cap2 + i) * 4 + c], keys[(1 * n + e) * 4 + c]);
  }
  assert.equal(kvAsFloat(kv.valueBuffer(0))[(0 * cap2 + 2) * 4 + 1], -(keys[(0 * n + 99) * 4 + 1] ?? 0));
  kv.release();
  assert.equal(pool.allocatedBytes, 0);
  assert.equal(pool.reservedBytes, 0);
});

t.test('copyKv converts between float32 and float16 in both directions', async () => {
  const f = Float32Array.of(0.25, -3, 7.5);
  const h = new Uint16Array(3);
  copyKv(h, 0, f, 0, 3);
  const back = new Float32Array(3);
  copyKv(back, 0, h, 0, 3);
  assert.deepEqual(Array.from(back), [0.25, -3, 7.5]);
});
