import assert from 'node:assert/strict';
import t from 'tap';
import { dropLowest, topK } from '../../../../src/policies/compression/select.js';

t.test('dropLowest drops the lowest-scoring units until the budget holds, within one unit', async () => {
  const scores = [5, 1, 3, 2, 4];
  const lengths = [2, 3, 1, 4, 2];
  // total 12, budget 6: drop score 1 (3 tokens) -> 9, score 2 (4) -> 5 <= 6.
  assert.deepEqual([...dropLowest(scores, lengths, 6)], [1, 0, 1, 0, 1]);
  assert.deepEqual([...dropLowest(scores, lengths, 12)], [1, 1, 1, 1, 1]);
  assert.deepEqual([...dropLowest(scores, lengths, 0)], [0, 0, 0, 0, 0]);
});

t.test("dropLowest 'nearest' drops the straddling unit only when that lands closer to the budget", async () => {
  const scores = [1, 2, 3];
  // total 12; budget 7: dropping unit 0 (5) -> 7.
  assert.deepEqual([...dropLowest(scores, [5, 5, 2], 7, 'nearest')], [0, 1, 1]);
  // budget 9: dropping unit 0 would land at 7 (2 under) vs staying at 12 (3 over): drop.
  assert.deepEqual([...dropLowest(scores, [5, 5, 2], 9, 'nearest')], [0, 1, 1]);
  // budget 10: 7 is 3 under vs 12 is 2 over: keep it; 'at-most' drops it anyway.
  assert.deepEqual([...dropLowest(scores, [5, 5, 2], 10, 'nearest')], [1, 1, 1]);
  assert.deepEqual([...dropLowest(scores, [5, 5, 2], 10, 'at-most')], [0, 1, 1]);
});

t.test('dropLowest: NaN (no prediction) is dropped last; ties drop the earlier unit first', async () => {
  assert.deepEqual([...dropLowest([Number.NaN, 1, 1, 9], [1, 1, 1, 1], 2)], [1, 0, 0, 1]);
  assert.deepEqual([...dropLowest([Number.NaN, 1, 1, 9], [1, 1, 1, 1], 3)], [1, 0, 1, 1]);
  assert.deepEqual([...dropLowest([Number.NaN, 1, 1, 9], [1, 1, 1, 1], 0)], [0, 0, 0, 0]);
});

t.test('topK keeps the k highest, NaN first, ties to the earlier index', async () => {
  assert.deepEqual([...topK([1, 5, 3, 5], 2)], [0, 1, 0, 1]);
  assert.deepEqual([...topK([1, 5, 3, 5], 1)], [0, 1, 0, 0]);
  assert.deepEqual([...topK([Number.NaN, 5, 3], 1)], [1, 0, 0]);
  assert.deepEqual([...topK([1, 2], 0)], [0, 0]);
  assert.deepEqual([...topK([1, 2], 5)], [1, 1]);
});
