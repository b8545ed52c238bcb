/** SequenceKv: an eviction's retain() compacts the entries kept and gives the freed blocks back to the pool. */
import assert from 'node:assert/strict';
import t from 'tap';
import { KvPool } from '../../../src/kv/kv-pool.js';
import { KV_BLOCK, SequenceKv } from '../../../src/kv/sequence-kv.js';

t.test('retain keeps the listed entries in order and frees whole blocks beyond one block of headroom', async () => {
  const shape = { numLayers: 2, numKvHeads: 2, headDim: 4 };
  const pool = new KvPool(1 << 30);
  const reserved = 10 * KV_BLOCK;
  assert.ok(pool.tryReserve(reserved * 2 * 2 * 2 * 4 * 4));
  const kv = new SequenceKv(shape, pool, reserved);
  const n = 600;
  // [B=1, KV, T, D] with entry e of head h holding h * 1000 + e in every lane.
  const keys = Float32Array.from({ length: 2 * n * 4 }, (_, i) => Math.floor(i / (n * 4)) * 1000 + Math.floor((i % (n * 4)) / 4));
  const values = keys.map((x) => -x);
  kv.append(
    [keys, keys],
    [values, values],
    0,
    n,
    Array.from({ length: n }, (_, i) => i),
  );
  const before = kv.allocatedBytes;
  assert.equal(pool.allocatedBytes, before);
  const keep = Int32Array.from({ length: 100 }, (_, i) => i * 6);
  kv.retain(0, [keep, keep]);
  assert.equal(kv.length(0), 100);
  assert.equal(kv.capacity(0), 2 * KV_BLOCK + KV_BLOCK);
  assert.ok(kv.allocatedBytes < before);
  assert.equal(pool.allocatedBytes, kv.allocatedBytes, 'the pool sees the freed bytes');
  const cap = kv.capacity(0);
  for (let h = 0; h < 2; h++) {
    for (let i = 0; i < 100; i++) {
      assert.equal(kv.keyBuffer(0)[(h * cap + i) * 4], h * 1000 + i * 6);
      assert.equal(kv.valueBuffer(0)[(h * cap + i) * 4 + 3], -(h * 1000 + i * 6));
      assert.equal(kv.positionBuffer(0)[h * cap + i], i * 6);
    }
  }
  // Appending after the shrink grows again within the reservation.
  const one = Float32Array.from({ length: 2 * 4 }, () => 7);
  kv.append([one, one], [one, one], 0, 1, [600]);
  assert.equal(kv.length(0), 101);
  kv.release();
  assert.equal(pool.allocatedBytes, 0);
});
