import assert from 'node:assert/strict';
import t from 'tap';
import { PolicyError } from '../../../../src/policies/errors.js';
import { buildResult, checkInput, flatten, resolveTarget } from '../../../../src/policies/compression/segments.js';
import type { CompressionInput } from '../../../../src/policies/compression/types.js';
import { WordTokenizer } from './fakes.js';

t.test('resolveTarget: a ratio applies to the compressible tokens, a count to the whole prompt', async () => {
  assert.deepEqual(resolveTarget(0.5, 110, 100), { targetTokens: 60, keep: 50 });
  assert.deepEqual(resolveTarget(0.29, 100, 100), { targetTokens: 29, keep: 29 });
  assert.deepEqual(resolveTarget(1, 110, 100), { targetTokens: 110, keep: 100 });
  assert.deepEqual(resolveTarget(0.001, 110, 100), { targetTokens: 11, keep: 1 });
  assert.deepEqual(resolveTarget(60, 110, 100), { targetTokens: 60, keep: 50 });
  assert.deepEqual(resolveTarget(500, 110, 100), { targetTokens: 500, keep: 100 });
  // The protected part alone exceeds the count: nothing compressible can stay and the target is missed.
  assert.deepEqual(resolveTarget(5, 110, 100), { targetTokens: 5, keep: 0 });
  assert.deepEqual(resolveTarget(0.5, 10, 0), { targetTokens: 10, keep: 0 });
  assert.throws(() => resolveTarget(1.5, 10, 5), PolicyError);
  assert.throws(() => resolveTarget(0, 10, 5), PolicyError);
});

t.test('flatten marks context compressible, system/question only when asked, template never', async () => {
  const input: CompressionInput = {
    segments: [
      { role: 'other', tokens: [0] },
      { role: 'system', tokens: [1, 2] },
      { role: 'context', tokens: [3, 4, 5] },
      { role: 'question', tokens: [6] },
    ],
  };
  const plain = flatten(input, { compressSystem: false, compressQuestion: false });
  assert.deepEqual([...plain.compressible], [0, 0, 0, 1, 1, 1, 0]);
  assert.equal(plain.compressibleCount, 3);
  assert.deepEqual([...plain.segmentStart], [0, 1, 3, 6]);
  const all = flatten(input, { compressSystem: true, compressQuestion: true });
  assert.deepEqual([...all.compressible], [0, 1, 1, 1, 1, 1, 1]);
});

t.test('checkInput names the bad segment and token', async () => {
  const ok: CompressionInput = { segments: [{ role: 'context', tokens: [1, 2] }] };
  checkInput(ok, 10, 'm');
  assert.throws(
    () => checkInput({ segments: [{ role: 'context', tokens: [1, 12] }] }, 10, 'm'),
    /m: segment 0 \(context\): token 1 is 12, expected an integer id in \[0, 10\)/,
  );
  assert.throws(() => checkInput({ segments: [{ role: 'user' as 'context', tokens: [] }] }, 10, 'm'), /segment 0 has role "user"/);
});

t.test('buildResult: kept tokens per segment, dropped spans with their text, counts', async () => {
  const tok = new WordTokenizer('a b c d e');
  const ids = tok.encode('a b c d e');
  const input: CompressionInput = {
    segments: [
      { role: 'other', tokens: [0] },
      { role: 'context', tokens: ids },
    ],
  };
  const flat = flatten(input, { compressSystem: false, compressQuestion: false });
  const keep = Uint8Array.from([1, 1, 0, 0, 1, 0]);
  const r = buildResult('m', input, flat, keep, { targetTokens: 3, keep: 2 }, tok, { x: 1 });
  assert.deepEqual(r.segments[1]?.tokens, [ids[0], ids[3]]);
  assert.deepEqual(r.tokens, [0, ids[0], ids[3]]);
  assert.equal(r.originalTokens, 6);
  assert.equal(r.compressedTokens, 3);
  assert.deepEqual(
    r.dropped.map((d) => [d.segment, d.start, d.end, d.text]),
    [
      [1, 1, 3, ' b c'],
      [1, 4, 5, ' e'],
    ],
  );
});
