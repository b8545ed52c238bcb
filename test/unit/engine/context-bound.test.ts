/** The served context length is bounded by what the KV budget (and the machine) can hold, and says so. */
import t from 'tap';
import assert from 'node:assert/strict';
import { boundContextLength } from '../../../src/engine/context-bound.js';

// 2 layers x 2 KV heads x 16 dims x (K + V) x 4 bytes = 512 bytes per token.
const SHAPE = { numLayers: 2, numKvHeads: 2, headDim: 16 };
const GIB = 1024 ** 3;

t.test('max_position_embeddings 1e15 is bounded to what the KV budget holds, with one line saying why', async () => {
  const b = boundContextLength(SHAPE, 1024 * 1024, 1e15, null, 64 * GIB);
  assert.equal(b.contextLength, 2048);
  assert.match(
    b.note ?? '',
    /^context length bounded to 2048 tokens: max_position_embeddings 1000000000000000 is more than the KV budget \(1048576 bytes at 512 bytes per token\)/,
  );
});

t.test('a length that fits is served as asked, silently; model.contextLength wins over the model', async () => {
  assert.deepEqual(boundContextLength(SHAPE, 1024 * 1024, 512, null, 64 * GIB), { contextLength: 512, note: null });
  assert.deepEqual(boundContextLength(SHAPE, 1024 * 1024, 1e15, 1000, 64 * GIB), { contextLength: 1000, note: null });
  assert.match(boundContextLength(SHAPE, 1024 * 1024, 512, 1e9, 64 * GIB).note ?? '', /model\.contextLength 1000000000 is more than/);
});

t.test('a KV budget beyond physical memory holds no more than the memory; one that holds no block is an error at start', async () => {
  const b = boundContextLength(SHAPE, 1e15, 1e15, null, 1024 * 1024);
  assert.equal(b.contextLength, 2048);
  assert.match(b.note ?? '', /this machine's memory \(1048576 bytes/);
  assert.throws(() => boundContextLength(SHAPE, 1000, 512, null, 64 * GIB), /holds fewer than 64 tokens/);
});
