import t from 'tap';
import assert from 'node:assert/strict';
import { TokenHistory } from '../../../../src/engine/sampling/token-history.js';

const seen = (h: TokenHistory): number[] => Array.from(h.seenIds.subarray(0, h.seenCount)).sort((a, b) => a - b);

t.test('prompt tokens are seen but not counted as generated', async () => {
  const h = new TokenHistory(100, [5, 7, 5, 99, 0]);
  assert.deepEqual(seen(h), [0, 5, 7, 99]);
  assert.equal(h.generatedDistinct, 0);
  assert.equal(h.generatedLength, 0);
  assert.equal(h.countOf(5), 0);
  assert.ok(h.hasSeen(99));
  assert.ok(!h.hasSeen(98));
});

t.test('generated tokens are counted and join the seen set', async () => {
  const h = new TokenHistory(100, [1]);
  for (const id of [3, 3, 4, 3, 1]) h.record(id);
  assert.equal(h.countOf(3), 3);
  assert.equal(h.countOf(4), 1);
  assert.equal(h.countOf(1), 1);
  assert.equal(h.countOf(2), 0);
  assert.equal(h.generatedLength, 5);
  assert.equal(h.generatedDistinct, 3);
  const pairs = Array.from(h.generatedIds.subarray(0, h.generatedDistinct), (id, i) => [id, h.generatedCounts[i]]);
  assert.deepEqual(
    pairs.sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0)),
    [
      [1, 1],
      [3, 3],
      [4, 1],
    ],
  );
  assert.deepEqual(seen(h), [1, 3, 4]);
});

t.test('storage grows past its initial capacity', async () => {
  const vocab = 5000;
  const prompt = Array.from({ length: 300 }, (_, i) => i * 7);
  const h = new TokenHistory(vocab, prompt);
  for (let i = 0; i < 1000; i++) h.record((i * 13) % vocab);
  for (let i = 0; i < 1000; i++) h.record((i * 13) % vocab);
  assert.equal(h.generatedDistinct, 1000);
  assert.equal(h.countOf(13), 2);
  const expected = new Set([...prompt, ...Array.from({ length: 1000 }, (_, i) => (i * 13) % vocab)]);
  assert.deepEqual(
    seen(h),
    [...expected].sort((a, b) => a - b),
  );
});

t.test('out-of-range ids are rejected with the offending value', async () => {
  assert.throws(() => new TokenHistory(10, [1, 10]), /promptTokens\[1\] must be a token id in \[0, 10\), got 10/);
  assert.throws(() => new TokenHistory(10, [-1]), /got -1/);
  const h = new TokenHistory(10, []);
  assert.throws(() => h.record(2.5), /tokenId must be a token id/);
  assert.throws(() => new TokenHistory(0, []), /vocabSize/);
});
