/**
 * PrefixCache on plain KV buffers: blocks found only under their exact prefix,
 * attached entries equal to the stored ones at their positions, bytes held in
 * the KV pool under the cache's own bound, least recently used leaves evicted
 * first, and everything reclaimable for admissions.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { KvPool } from '../../../src/kv/kv-pool.js';
import { blockKeys, PrefixCache } from '../../../src/kv/prefix-cache.js';
import { kvBytesPerToken, SequenceKv } from '../../../src/kv/sequence-kv.js';

const shape = { numLayers: 2, numKvHeads: 2, headDim: 3 };
const B = 4;
const blockBytes = B * kvBytesPerToken(shape);

/** A sequence cache holding `tokens`, entry e of head h in layer l holding token * 100 + l * 10 + h in every lane (values negated). */
function filled(pool: KvPool, tokens: readonly number[]): SequenceKv {
  const kv = new SequenceKv(shape, pool, 64);
  const n = tokens.length;
  const layer = (l: number): Float32Array =>
    Float32Array.from({ length: 2 * n * 3 }, (_, i) => (tokens[Math.floor((i % (n * 3)) / 3)] ?? 0) * 100 + l * 10 + Math.floor(i / (n * 3)));
  const keys = [layer(0), layer(1)];
  kv.append(
    keys,
    keys.map((k) => k.map((x) => -x)),
    0,
    n,
    Array.from({ length: n }, (_, i) => i),
  );
  return kv;
}

function fresh(pool: KvPool): SequenceKv {
  return new SequenceKv(shape, pool, 64);
}

const seqOf = (n: number, from = 1): number[] => Array.from({ length: n }, (_, i) => from + i);

t.test('keys chain over the whole prefix: the same block after a different prefix has another key', async () => {
  const a = blockKeys([1, 2, 3, 4, 5, 6, 7, 8, 9], B);
  const b = blockKeys([9, 2, 3, 4, 5, 6, 7, 8], B);
  assert.equal(a.length, 2, 'full blocks only');
  assert.notEqual(a[1], b[1]);
  assert.deepEqual(blockKeys([1, 2, 3, 4, 5, 6, 7, 8], B), a);
});

t.test('a stored prefix is found, attached at its positions with the stored entries, and capped by the limit', async () => {
  const pool = new KvPool(1 << 20);
  const cache = new PrefixCache(shape, pool, { blockTokens: B, maxBytes: 1 << 20 });
  const prompt = seqOf(10);
  assert.equal(cache.insert(filled(pool, prompt), prompt, blockKeys(prompt, B)), 2);
  assert.equal(pool.reservedBytes, 2 * blockBytes, 'the blocks are held in the KV budget');

  const next = [...seqOf(8), 50, 51, 52];
  const keys = blockKeys(next, B);
  assert.equal(cache.match(next, keys, next.length - 1), 8);
  assert.equal(cache.match(next, keys, 6), 6);
  const kv = fresh(pool);
  assert.equal(cache.attach(kv, next, keys, 7), 7);
  assert.equal(kv.length(0), 7);
  assert.equal(kv.nextPosition, 7);
  for (let l = 0; l < 2; l++) {
    const cap = kv.capacity(l);
    for (let h = 0; h < 2; h++) {
      for (let e = 0; e < 7; e++) {
        assert.equal(kv.positionBuffer(l)[h * cap + e], e);
        assert.equal(kv.keyBuffer(l)[(h * cap + e) * 3 + 2], (next[e] ?? 0) * 100 + l * 10 + h);
        assert.equal(kv.valueBuffer(l)[(h * cap + e) * 3], -((next[e] ?? 0) * 100 + l * 10 + h));
      }
    }
  }
  const other = [2, ...seqOf(9)];
  assert.equal(cache.match(other, blockKeys(other, B), 9), 0, 'a different first token: nothing matches');
});

t.test('the byte bound evicts least recently used leaves first; a parent outlives its children', async () => {
  const pool = new KvPool(1 << 20);
  const cache = new PrefixCache(shape, pool, { blockTokens: B, maxBytes: 3 * blockBytes });
  const a = seqOf(8, 1);
  const b = seqOf(4, 100);
  cache.insert(filled(pool, a), a, blockKeys(a, B));
  cache.insert(filled(pool, b), b, blockKeys(b, B));
  assert.equal(cache.stats().blocks, 3);
  // Touch b, then insert c: a's leaf (its second block) is the least recently used leaf.
  cache.attach(fresh(pool), [...b, 0], blockKeys([...b, 0], B), 4);
  const c = seqOf(4, 200);
  cache.insert(filled(pool, c), c, blockKeys(c, B));
  assert.equal(cache.stats().blocks, 3);
  assert.equal(cache.stats().evictions, 1);
  assert.equal(cache.match([...a, 0], blockKeys([...a, 0], B), 8), 4, "a's first block stays, its second went");
  assert.equal(cache.match([...b, 0], blockKeys([...b, 0], B), 4), 4);
  assert.equal(pool.reservedBytes, 3 * blockBytes);
});

t.test('reclaim frees cached blocks for an admission; the pool budget also bounds insertion', async () => {
  const pool = new KvPool(4 * blockBytes);
  const cache = new PrefixCache(shape, pool, { blockTokens: B, maxBytes: 1 << 20 });
  const a = seqOf(16);
  assert.equal(cache.insert(filled(pool, a), a, blockKeys(a, B)), 4);
  assert.equal(pool.reservedBytes, 4 * blockBytes);
  const b = seqOf(8, 500);
  assert.equal(
    cache.insert(filled(pool, b), b, blockKeys(b, B)),
    2,
    "the full pool made room for new blocks by evicting old leaves, never the new block's parent",
  );
  assert.equal(cache.reclaim(3 * blockBytes), true);
  assert.ok(pool.reservedBytes + 3 * blockBytes <= pool.budgetBytes);
  assert.equal(cache.reclaim(5 * blockBytes), false, 'more than the whole budget');
  assert.equal(cache.stats().blocks, 0);
  assert.equal(pool.reservedBytes, 0);
});

t.test('entries that are not at their own positions (an evicted or shifted cache) are never stored', async () => {
  const pool = new KvPool(1 << 20);
  const cache = new PrefixCache(shape, pool, { blockTokens: B, maxBytes: 1 << 20 });
  const tokens = seqOf(8);
  const kv = filled(pool, tokens);
  const keep = Int32Array.from([0, 1, 2, 3, 5, 6, 7]);
  for (let l = 0; l < 2; l++) kv.retain(l, [keep, keep]);
  assert.equal(cache.insert(kv, tokens.slice(0, 7), blockKeys(tokens.slice(0, 7), B)), 1, 'the first block is intact; the second is not full');
  const shifted = filled(pool, tokens);
  for (let l = 0; l < 2; l++) shifted.positionBuffer(l)[1] = 7;
  const cache2 = new PrefixCache(shape, pool, { blockTokens: B, maxBytes: 1 << 20 });
  assert.equal(cache2.insert(shifted, tokens, blockKeys(tokens, B)), 0);
});
