import t from 'tap';
import assert from 'node:assert/strict';
import {
  applyLogitBias,
  applyPresenceFrequencyPenalty,
  applyRepetitionPenalty,
  LogitBiasProcessor,
  PresenceFrequencyPenaltyProcessor,
  RepetitionPenaltyProcessor,
} from '../../../../src/engine/sampling/logits-processors.js';
import { TokenHistory } from '../../../../src/engine/sampling/token-history.js';

t.test('repetition penalty divides positive and multiplies non-positive logits of seen tokens only', async () => {
  const logits = new Float32Array([3, -2, 0, 1.5, -Infinity, 4]);
  applyRepetitionPenalty(logits, new Int32Array([0, 1, 2, 4, 99]), 4, 1.5);
  assert.deepEqual(Array.from(logits), [Math.fround(3 / 1.5), Math.fround(-2 * 1.5), 0, 1.5, -Infinity, 4]);
});

t.test('presence and frequency penalties follow the OpenAI formula', async () => {
  const logits = new Float32Array([1, 1, 1, 1]);
  const ids = new Int32Array([0, 2, 3]);
  const counts = new Uint32Array([1, 3, 7]);
  applyPresenceFrequencyPenalty(logits, ids, counts, 2, 0.5, 0.25);
  // token 0: 1 - (0.5 + 0.25*1); token 2: 1 - (0.5 + 0.25*3); token 3 is past `distinct`.
  assert.deepEqual(Array.from(logits), [0.25, 1, -0.25, 1]);
  const negative = new Float32Array([0, 0]);
  applyPresenceFrequencyPenalty(negative, new Int32Array([1]), new Uint32Array([2]), 1, -1, -0.5);
  assert.deepEqual(Array.from(negative), [0, 2]);
});

t.test('logit bias adds, and -100 is a hard ban', async () => {
  const logits = new Float32Array([1, 2, 3, 500]);
  applyLogitBias(logits, new Int32Array([0, 1, 3]), new Float32Array([2.5, -1, -100]));
  assert.deepEqual(Array.from(logits), [3.5, 1, 3, -Infinity]);
});

t.test('processors read the live history', async () => {
  const h = new TokenHistory(4, [0]);
  const rep = new RepetitionPenaltyProcessor(h, 2);
  const pf = new PresenceFrequencyPenaltyProcessor(h, 1, 0.5);
  const a = new Float32Array([2, 2, 2, 2]);
  rep.apply(a);
  pf.apply(a);
  assert.deepEqual(Array.from(a), [1, 2, 2, 2]);
  h.record(1);
  h.record(1);
  const b = new Float32Array([2, 2, 2, 2]);
  rep.apply(b);
  pf.apply(b);
  // token 1: repetition 2 -> 1, then 1 - (1 + 0.5*2) = -1
  assert.deepEqual(Array.from(b), [1, -1, 2, 2]);
});

t.test('logit bias processor validates its map', async () => {
  assert.throws(() => new LogitBiasProcessor(new Map([[4, 1]]), 4), /logitBias key must be a token id in \[0, 4\), got 4/);
  assert.throws(() => new LogitBiasProcessor(new Map([[1, Number.NaN]]), 4), /logitBias value for token 1/);
  const p = new LogitBiasProcessor(
    new Map([
      [1, 10],
      [2, -100],
    ]),
    4,
  );
  const l = new Float32Array(4);
  p.apply(l);
  assert.deepEqual(Array.from(l), [0, 10, -Infinity, 0]);
});
