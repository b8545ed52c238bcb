/**
 * computeLogprobs' best-token lists against a full sort: logprob descending, ties by lowest id,
 * -Infinity never listed, on both sides of the one-pass list's limit (64) and beyond the finite count.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { computeLogprobs } from '../../../../src/engine/sampling/logprobs.js';
import { Xoshiro128 } from '../../../../src/engine/sampling/rng.js';

function referenceTop(logits: Float32Array, k: number): number[] {
  const finite = Array.from(logits.keys()).filter((i) => (logits[i] ?? -Infinity) > -Infinity);
  finite.sort((a, b) => (logits[b] ?? 0) - (logits[a] ?? 0) || a - b);
  return finite.slice(0, k);
}

t.test('the best tokens equal a full sort (ties by lowest id, -Infinity never listed)', async () => {
  const rng = Xoshiro128.fromSeed(5);
  for (const V of [50, 3000]) {
    // Values on a coarse grid, so many tokens tie; every seventh is -Infinity.
    const logits = Float32Array.from({ length: V }, (_, i) => (i % 7 === 3 ? -Infinity : Math.floor(rng.nextFloat() * 40) / 4));
    const ids = new Int32Array(V);
    for (const k of [1, 5, 20, 64, 65, 200, V]) {
      const r = computeLogprobs(logits, 0, k, ids, 2.5);
      const want = referenceTop(logits, k);
      assert.deepEqual(
        r.topLogprobs.map((x) => x.tokenId),
        want,
        `V=${V} k=${k}`,
      );
      for (const x of r.topLogprobs) assert.equal(x.logprob, (logits[x.tokenId] ?? 0) - 2.5);
      assert.equal(r.logprob, (logits[0] ?? 0) - 2.5);
    }
  }
  assert.deepEqual(computeLogprobs(Float32Array.of(1, 2), 1, 0, new Int32Array(2), 3).topLogprobs, []);
  assert.throws(() => computeLogprobs(Float32Array.of(-Infinity), 0, 1, new Int32Array(1), -Infinity), /every logit is -Infinity/);
});
