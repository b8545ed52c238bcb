import t from 'tap';
import assert from 'node:assert/strict';
import { SequenceSampler } from '../../../../src/engine/sampling/sequence-sampler.js';
import { Xoshiro128 } from '../../../../src/engine/sampling/rng.js';
import { DEFAULT_SAMPLING, type SamplingParams } from '../../../../src/engine/types.js';
import { EngineError } from '../../../../src/engine/errors.js';

const params = (p: Partial<SamplingParams>): SamplingParams => ({ ...DEFAULT_SAMPLING, ...p });

function randomLogits(n: number, seed: number, scale = 8): Float32Array {
  const rng = Xoshiro128.fromSeed(seed);
  return Float32Array.from({ length: n }, () => (rng.nextFloat() - 0.5) * scale);
}

function draws(s: SequenceSampler, logits: Float32Array, count: number): number[] {
  return Array.from({ length: count }, () => s.sample(logits).tokenId);
}

function referenceArgmax(l: Float32Array): number {
  let best = 0;
  for (let i = 1; i < l.length; i++) if ((l[i] ?? 0) > (l[best] ?? 0)) best = i;
  return best;
}

t.test('temperature 0 is argmax, ties to the lowest id', async () => {
  for (const seed of [1, 2, 3]) {
    const logits = randomLogits(5000, seed);
    const s = new SequenceSampler(params({ temperature: 0 }), logits.length, []);
    assert.equal(s.sample(logits).tokenId, referenceArgmax(logits));
  }
  const tie = new SequenceSampler(params({ temperature: 0 }), 5, []);
  assert.equal(tie.sample(new Float32Array([1, 3, -Infinity, 3, 0])).tokenId, 1);
});

t.test('top-k = 1 equals greedy at any temperature', async () => {
  const logits = randomLogits(3000, 9);
  const s = new SequenceSampler(params({ temperature: 1.7, topK: 1, seed: 5 }), logits.length, []);
  for (const t of draws(s, logits, 50)) assert.equal(t, referenceArgmax(logits));
});

t.test('same seed gives the same 100 samples; different seeds differ', async () => {
  const logits = randomLogits(50, 4, 2);
  const run = (seed: number): number[] => draws(new SequenceSampler(params({ temperature: 1, seed }), logits.length, []), logits, 100);
  assert.deepEqual(run(42), run(42));
  assert.notDeepEqual(run(42), run(43));
  const unseeded = (): number[] => draws(new SequenceSampler(params({}), logits.length, []), logits, 100);
  assert.notDeepEqual(unseeded(), unseeded());
});

t.test('temperature sampling matches softmax(l / T) (chi-square, seeded)', async () => {
  const logits = new Float32Array([1.2, -0.3, 0.5, 2.0, 0.0]);
  const n = 20_000;
  for (const [T, seed] of [
    [1, 11],
    [0.5, 12],
    [2.5, 13],
  ] as const) {
    const s = new SequenceSampler(params({ temperature: T, seed }), logits.length, []);
    const counts = new Array<number>(5).fill(0);
    for (const t of draws(s, logits, n)) counts[t] = (counts[t] ?? 0) + 1;
    const w = Array.from(logits, (l) => Math.exp(l / T));
    const z = w.reduce((a, b) => a + b, 0);
    let chi = 0;
    for (let i = 0; i < 5; i++) {
      const expected = ((w[i] ?? 0) / z) * n;
      chi += ((counts[i] ?? 0) - expected) ** 2 / expected;
    }
    // 4 degrees of freedom: 18.47 is the 0.1% critical value.
    assert.ok(chi < 18.47, `T=${T}: chi-square ${chi.toFixed(2)}, counts ${counts.join(',')}`);
  }
});

t.test('sampling respects the truncated support and covers it', async () => {
  // Probabilities 0.4, 0.3, 0.2, 0.1 (+ a banned token): top-p 0.65 keeps {1, 3}.
  const logits = new Float32Array([Math.log(0.2), Math.log(0.4), Math.log(0.1), Math.log(0.3), -Infinity]);
  const s = new SequenceSampler(params({ topP: 0.65, seed: 3 }), logits.length, []);
  const got = draws(s, logits, 2000);
  assert.deepEqual([...new Set(got)].sort(), [1, 3]);
  const share = got.filter((t) => t === 1).length / got.length;
  assert.ok(Math.abs(share - 4 / 7) < 0.04, `token 1 share ${share}`);
  const m = new SequenceSampler(params({ minP: 0.6, temperature: 1, seed: 3 }), logits.length, []);
  assert.deepEqual([...new Set(draws(m, logits, 200))].sort(), [1, 3]);
});

t.test('logit_bias -100 bans a token and +100 forces it', async () => {
  const logits = new Float32Array([0, 5, 1, 2]);
  const ban = new SequenceSampler(params({ temperature: 0, logitBias: new Map([[1, -100]]) }), 4, []);
  assert.equal(ban.sample(logits).tokenId, 3);
  const banT = new SequenceSampler(params({ temperature: 3, seed: 1, logitBias: new Map([[1, -100]]) }), 4, []);
  assert.ok(!draws(banT, logits, 500).includes(1));
  const force = new SequenceSampler(params({ temperature: 1, seed: 1, logitBias: new Map([[0, 100]]) }), 4, []);
  assert.ok(draws(force, logits, 500).every((t) => t === 0));
  const all = new SequenceSampler(
    params({
      logitBias: new Map([
        [0, -100],
        [1, -100],
        [2, -100],
        [3, -100],
      ]),
    }),
    4,
    [],
  );
  assert.throws(() => all.sample(logits), /logit_bias bans every token/);
});

t.test('penalties use the prompt (repetition) and the generated tokens (presence/frequency)', async () => {
  const logits = new Float32Array([2, 1.9, 1.8, 0]);
  // Repetition 1.2 on prompt token 0: 2 / 1.2 = 1.667 < 1.9, so greedy picks 1.
  const rep = new SequenceSampler(params({ temperature: 0, repetitionPenalty: 1.2 }), 4, [0]);
  assert.equal(rep.sample(logits).tokenId, 1);
  // Presence ignores the prompt (first pick is 0) and is paid once per token, not per use:
  // then 0 -> 1.85, 1 -> 1.75, 2 -> 1.8 forever after.
  const pf = new SequenceSampler(params({ temperature: 0, presencePenalty: 0.15, frequencyPenalty: 0 }), 4, [0]);
  assert.deepEqual(draws(pf, logits, 4), [0, 1, 0, 0]);
  assert.equal(pf.history.countOf(0), 3);
  assert.equal(pf.history.generatedLength, 4);
  // Frequency alone: 0 costs 0.06 per use, so it repeats until 2 - 0.06k drops below 1.9 (k = 2).
  const freq = new SequenceSampler(params({ temperature: 0, frequencyPenalty: 0.06 }), 4, []);
  assert.deepEqual(draws(freq, logits, 4), [0, 0, 1, 0]);
});

t.test('logprobs are the raw log_softmax of the input (within 1e-6: float32 weights, float64 sum), top list sorted', async () => {
  const logits = randomLogits(4000, 77, 20);
  logits[10] = -Infinity;
  const max = Math.max(...logits);
  let z = 0;
  for (const l of logits) z += Math.exp(l - max);
  const ref = Array.from(logits, (l) => l - max - Math.log(z));
  const order = Array.from(ref.keys()).sort((a, b) => (ref[b] ?? 0) - (ref[a] ?? 0) || a - b);

  const s = new SequenceSampler(params({ temperature: 0.8, topK: 40, seed: 8, logprobs: 5, logitBias: new Map([[order[0] ?? 0, -100]]) }), logits.length, []);
  const before = Float32Array.from(logits);
  const r = s.sample(logits);
  assert.deepEqual(logits, before, 'input logits untouched');
  assert.notEqual(r.tokenId, order[0]);
  assert.ok(r.logprob !== null && Math.abs(r.logprob - (ref[r.tokenId] ?? 0)) < 1e-6);
  assert.ok(r.topLogprobs !== null);
  // Raw logprobs: the banned token is still the model's favourite.
  assert.deepEqual(
    r.topLogprobs.map((t) => t.tokenId),
    order.slice(0, 5),
  );
  for (const t of r.topLogprobs) assert.ok(Math.abs(t.logprob - (ref[t.tokenId] ?? 0)) < 1e-6);
  for (let i = 1; i < r.topLogprobs.length; i++) {
    assert.ok((r.topLogprobs[i - 1]?.logprob ?? 0) >= (r.topLogprobs[i]?.logprob ?? 0));
  }

  const none = new SequenceSampler(params({ temperature: 0 }), logits.length, []).sample(logits);
  assert.equal(none.logprob, null);
  assert.equal(none.topLogprobs, null);
  const zero = new SequenceSampler(params({ temperature: 0, logprobs: 0 }), logits.length, []).sample(logits);
  assert.deepEqual(zero.topLogprobs, []);
  assert.ok(Math.abs((zero.logprob ?? 0) - (ref[order[0] ?? 0] ?? 0)) < 1e-6);
  // No processor: log-sum-exp from the kernel's row after sampling read it (temperature alone, then top-p).
  for (const extra of [{ temperature: 1 }, { temperature: 0.7, topP: 0.9 }]) {
    const raw = new SequenceSampler(params({ ...extra, seed: 3, logprobs: 3 }), logits.length, []).sample(logits);
    assert.ok(raw.logprob !== null && Math.abs(raw.logprob - (ref[raw.tokenId] ?? 0)) < 1e-6);
    assert.deepEqual(
      raw.topLogprobs?.map((t) => t.tokenId),
      order.slice(0, 3),
    );
    for (const t of raw.topLogprobs ?? []) assert.ok(Math.abs(t.logprob - (ref[t.tokenId] ?? 0)) < 1e-6);
  }
  const many = new SequenceSampler(params({ temperature: 0, logprobs: 10 }), 3, []).sample(new Float32Array([0, -Infinity, 1]));
  assert.deepEqual(
    many.topLogprobs?.map((t) => t.tokenId),
    [2, 0],
  );
});

t.test('invalid logits and parameters raise clear errors', async () => {
  const s = new SequenceSampler(params({}), 3, []);
  assert.throws(() => s.sample(new Float32Array([0, Number.NaN, 1])), /logits\[1\] is NaN/);
  assert.throws(() => s.sample(new Float32Array([0, 1, Infinity])), /logits\[2\] is Infinity/);
  assert.throws(() => s.sample(new Float32Array(4)), /length 4, expected the vocab size 3/);
  assert.throws(() => new SequenceSampler(params({ temperature: -1 }), 3, []), /sampling\.temperature/);
  assert.throws(() => new SequenceSampler(params({ topP: 0 }), 3, []), /sampling\.topP must be in \(0, 1\]/);
  assert.throws(() => new SequenceSampler(params({ topK: 1.5 }), 3, []), /sampling\.topK/);
  assert.throws(() => new SequenceSampler(params({ minP: 2 }), 3, []), /sampling\.minP/);
  assert.throws(() => new SequenceSampler(params({ repetitionPenalty: 0 }), 3, []), /sampling\.repetitionPenalty/);
  assert.throws(() => new SequenceSampler(params({ logprobs: -1 }), 3, []), /sampling\.logprobs/);
  assert.throws(() => new SequenceSampler(params({ seed: 0.5 }), 3, []), /sampling\.seed/);
  assert.throws(() => new SequenceSampler(params({}), 3, [3]), /promptTokens\[0\]/);
});

t.test('samplers sharing scratch buffers do not interfere', async () => {
  const logits = randomLogits(1000, 5, 4);
  const solo = draws(new SequenceSampler(params({ seed: 9, topP: 0.9 }), 1000, []), logits, 30);
  const a = new SequenceSampler(params({ seed: 9, topP: 0.9 }), 1000, []);
  const b = new SequenceSampler(params({ seed: 10, topK: 3, repetitionPenalty: 1.3 }), 1000, [1, 2]);
  const interleaved: number[] = [];
  for (let i = 0; i < 30; i++) {
    interleaved.push(a.sample(logits).tokenId);
    b.sample(randomLogits(1000, i));
  }
  assert.deepEqual(interleaved, solo);
});

t.test("a logit_bias that bans every token is the request's error (invalid_request, param logit_bias)", async () => {
  const bias = new Map<number, number>([
    [0, -100],
    [1, -100],
    [2, -100],
  ]);
  const sampler = new SequenceSampler({ ...DEFAULT_SAMPLING, temperature: 0, logitBias: bias }, 3, []);
  assert.throws(
    () => sampler.sample(new Float32Array([1, 2, 3])),
    (err: unknown) => err instanceof EngineError && err.code === 'invalid_request' && err.field === 'logitBias',
  );
});

t.test('a grammar constraint masks the logits: greedy and seeded draws only ever take allowed tokens, EOS only when complete', async () => {
  const { GrammarAutomaton } = await import('../../../../src/engine/grammar/automaton.js');
  const { GrammarMatcher } = await import('../../../../src/engine/grammar/matcher.js');
  const { TokenTrie } = await import('../../../../src/engine/grammar/token-trie.js');
  const { grammarFromJsonSchema } = await import('../../../../src/engine/grammar/json-schema.js');
  // Tokens 0..255 are bytes, 256 is EOS.
  const bytes = [...Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)), null];
  const trie = new TokenTrie(bytes, 257);
  const automaton = new GrammarAutomaton(grammarFromJsonSchema({ enum: ['yes', 'no'] }), trie);
  for (const temperature of [0, 1]) {
    for (let seed = 0; seed < 20; seed++) {
      const s = new SequenceSampler(params({ temperature, seed, maxTokens: 10 }), 257, [], new GrammarMatcher(automaton, new Set([256])));
      let text = '';
      for (let step = 0; step < 10; step++) {
        const id = s.sample(randomLogits(257, seed * 31 + step)).tokenId;
        if (id === 256) break;
        text += String.fromCharCode(id);
        if (s.constraint?.finished) break;
      }
      assert.ok(['"yes"', '"no"'].includes(text), text);
    }
  }
});
