import assert from 'node:assert/strict';
import t from 'tap';
import { selfInformation, tokenizerMismatch } from '../../../../src/policies/compression/scorer.js';
import { WordTokenizer } from './fakes.js';

t.test('selfInformation is -logprob, NaN where there is no prediction', async () => {
  const si = selfInformation(Float32Array.from([Number.NaN, -0.5, -2]));
  assert.ok(Number.isNaN(si[0]));
  assert.deepEqual([...si.subarray(1)], [0.5, 2]);
});

t.test('tokenizerMismatch: same pieces for every id, or the first difference', async () => {
  const a = new WordTokenizer('a b c');
  assert.equal(tokenizerMismatch(a, new WordTokenizer('a b c')), null);
  assert.match(tokenizerMismatch(a, new WordTokenizer('a b c d')) ?? '', /has 4 ids, the served model's 5/);
  assert.match(tokenizerMismatch(a, new WordTokenizer('a c b')) ?? '', /id 2 is " b" for the scorer and " c" for the served model/);
});
