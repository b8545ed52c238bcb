import t from 'tap';
import assert from 'node:assert/strict';
import { SamplingScratch } from '../../../../src/engine/sampling/scratch.js';
import { truncate, drawCategorical, type TruncationParams } from '../../../../src/engine/sampling/truncation.js';
import { Xoshiro128 } from '../../../../src/engine/sampling/rng.js';

const base: TruncationParams = { temperature: 1, topK: 0, topP: 1, minP: 0 };

function kept(logits: number[] | Float32Array, p: Partial<TruncationParams>): number[] {
  const s = new SamplingScratch(logits.length);
  s.work.set(logits);
  const n = truncate({ ...base, ...p }, s);
  return Array.from(s.ids.subarray(0, n)).sort((a, b) => a - b);
}

/** Float64 reference: order, renormalized probabilities, then the three cuts by their definitions. */
function reference(logits: Float32Array, p: TruncationParams): number[] {
  const ids = Array.from(logits.keys()).filter((i) => (logits[i] ?? -Infinity) > -Infinity);
  ids.sort((a, b) => (logits[b] ?? 0) - (logits[a] ?? 0) || a - b);
  let order = p.topK > 0 ? ids.slice(0, p.topK) : ids;
  const max = logits[order[0] ?? 0] ?? 0;
  const w = order.map((i) => Math.exp(((logits[i] ?? 0) - max) / p.temperature));
  const z = w.reduce((a, b) => a + b, 0);
  if (p.topP < 1) {
    let cum = 0;
    let cut = order.length;
    for (let j = 0; j < order.length; j++) {
      cum += (w[j] ?? 0) / z;
      if (cum >= p.topP) {
        cut = j + 1;
        break;
      }
    }
    order = order.slice(0, cut);
  }
  if (p.minP > 0) order = order.filter((_, j) => (w[j] ?? 0) >= p.minP);
  return order.sort((a, b) => a - b);
}

t.test('top-p keeps exactly the smallest prefix whose mass reaches p', async () => {
  // Probabilities 0.4, 0.3, 0.2, 0.1 at shuffled positions.
  const logits = [Math.log(0.2), Math.log(0.4), Math.log(0.1), Math.log(0.3)];
  assert.deepEqual(kept(logits, { topP: 0.35 }), [1]);
  assert.deepEqual(kept(logits, { topP: 0.41 }), [1, 3]);
  assert.deepEqual(kept(logits, { topP: 0.69 }), [1, 3]);
  assert.deepEqual(kept(logits, { topP: 0.71 }), [0, 1, 3]);
  assert.deepEqual(kept(logits, { topP: 0.95 }), [0, 1, 2, 3]);
  assert.deepEqual(kept(logits, { topP: 1 }), [0, 1, 2, 3]);
});

t.test('top-p after top-k uses the distribution renormalized over the top k', async () => {
  const logits = [Math.log(0.2), Math.log(0.4), Math.log(0.1), Math.log(0.3)];
  // Over the top 2 the masses are 4/7 and 3/7: p = 0.55 keeps one token, p = 0.6 both.
  assert.deepEqual(kept(logits, { topK: 2, topP: 0.55 }), [1]);
  assert.deepEqual(kept(logits, { topK: 2, topP: 0.6 }), [1, 3]);
});

t.test('min-p keeps tokens with probability >= min_p * max probability, after temperature', async () => {
  const logits = [0, Math.log(0.5), Math.log(0.09), Math.log(0.11), -Infinity];
  assert.deepEqual(kept(logits, { minP: 0.1 }), [0, 1, 3]);
  assert.deepEqual(kept(logits, { minP: 0.6 }), [0]);
  // T = 2 flattens: relative weights become sqrt(.5), sqrt(.09) = 0.3, sqrt(.11).
  assert.deepEqual(kept(logits, { minP: 0.31, temperature: 2 }), [0, 1, 3]);
  assert.deepEqual(kept(logits, { minP: 0.29, temperature: 2 }), [0, 1, 2, 3]);
});

t.test('top-k keeps the k best, ties by lowest id, and never a -Infinity token', async () => {
  const logits = [1, 5, 5, 2, -Infinity, 5];
  assert.deepEqual(kept(logits, { topK: 2 }), [1, 2]);
  assert.deepEqual(kept(logits, { topK: 4 }), [1, 2, 3, 5]);
  assert.deepEqual(kept(logits, { topK: 100 }), [0, 1, 2, 3, 5]);
  assert.throws(() => kept([-Infinity, -Infinity], {}), /every token has logit -Infinity/);
});

t.test('truncation matches a float64 reference on random vocabularies', async () => {
  const rng = Xoshiro128.fromSeed(2024);
  for (let trial = 0; trial < 40; trial++) {
    const n = 2000 + Math.floor(rng.nextFloat() * 3000);
    const logits = new Float32Array(n);
    for (let i = 0; i < n; i++) logits[i] = (rng.nextFloat() - 0.5) * 16;
    // Exact ties straddling the top-p boundary must resolve to the lowest ids.
    if (trial % 5 === 4) for (let i = 0; i < n; i += 3) logits[i] = 4;
    // Extremes too: a near-greedy T puts almost everything in the tail bucket, a huge T makes it flat.
    const temperature = trial % 10 === 7 ? 0.001 : trial % 10 === 8 ? 50 : 0.3 + rng.nextFloat() * 1.5;
    const p: TruncationParams = {
      temperature,
      topK: trial % 3 === 0 ? 1 + Math.floor(rng.nextFloat() * 500) : 0,
      topP: trial % 2 === 0 || trial % 10 >= 7 ? 0.5 + rng.nextFloat() * 0.49 : 1,
      minP: trial % 4 === 1 ? rng.nextFloat() * 0.2 : 0,
    };
    assert.deepEqual(kept(logits, p), reference(logits, p), JSON.stringify(p));
  }
});

t.test('top-p over peaked vocabularies (the nucleus among the few likely tokens) and long flat tails matches the reference', async () => {
  const rng = Xoshiro128.fromSeed(77);
  for (let trial = 0; trial < 24; trial++) {
    const n = 20000;
    // A peak of 1-40 likely tokens over a tail 8-14 nats below: with a light tail the nucleus lies
    // among the peak; with a heavy one (trial % 3 === 2: 14 nats below but 20,000 strong) the tail holds it.
    const tailBelow = trial % 3 === 2 ? 9 : 14;
    const logits = Float32Array.from({ length: n }, () => -tailBelow + rng.nextFloat() * (trial % 3 === 2 ? 0.01 : 6));
    const peak = 1 + Math.floor(rng.nextFloat() * 40);
    for (let j = 0; j < peak; j++) logits[Math.floor(rng.nextFloat() * n)] = rng.nextFloat() * 3;
    if (trial % 4 === 1) for (let i = 0; i < n; i += 97) logits[i] = -Infinity;
    const p: TruncationParams = { temperature: 0.5 + rng.nextFloat(), topK: 0, topP: 0.5 + rng.nextFloat() * 0.49, minP: trial % 5 === 3 ? 0.01 : 0 };
    assert.deepEqual(kept(logits, p), reference(logits, p), JSON.stringify(p));
  }
});

t.test('drawCategorical walks cumulative weights and skips zero weights', async () => {
  const probs = new Float64Array([0, 1, 0, 3]);
  const ids = new Int32Array([0, 1, 2, 3]);
  assert.equal(drawCategorical(ids, 4, probs, 0), 1);
  assert.equal(drawCategorical(ids, 4, probs, 0.2499), 1);
  assert.equal(drawCategorical(ids, 4, probs, 0.25), 3);
  assert.equal(drawCategorical(ids, 4, probs, 1 - 2 ** -53), 3);
  assert.equal(drawCategorical(ids, 2, probs, 0.9), 1);
});
