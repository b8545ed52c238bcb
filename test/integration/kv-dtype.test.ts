/**
 * A half-size KV cache (memory.kvDtype fp16) in the real engine on stories260K:
 * greedy output stays that of the fp32 cache (log-probabilities within a
 * tolerance measured below), the same KV budget admits twice the sequences, and
 * the prefix cache and an eviction policy work on float16 entries.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { type GenerateRequest, type TokenEvent } from '../../src/engine/types.js';
import { kvBytesPerToken } from '../../src/kv/sequence-kv.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { parsePolicyFile, type Policy } from '../../src/policies/registry.js';
import { openTestCore } from '../helpers/core.js';
import { missingShared, sharedPath, STORIES_DIR } from '../helpers/shared.js';
import { greedyRequest } from '../helpers/requests.js';

const skip = missingShared('models', 'stories260K') ?? missingShared('data', 'text', 'tinystories_niklas6.txt');

/**
 * Largest |logprob(fp16 KV) - logprob(fp32 KV)| of a chosen token allowed. Measured on
 * these prompts (3 x 48 greedy tokens): 2.9e-2 at most (fp16 keeps 11 significant
 * bits of every cached key and value); 0.1 leaves room for other machines' kernels
 * and is still far below what a wrong cache gives (a different token within a few steps).
 */
const LOGPROB_TOLERANCE = 0.1;

let story: number[] | null = null;
function storyTokens(n: number, offset = 0): number[] {
  story ??= loadTokenizer(STORIES_DIR).encode(readFileSync(sharedPath('data', 'text', 'tinystories_niklas6.txt'), 'utf8'), { addSpecialTokens: true });
  return story.slice(offset, offset + n);
}

function request(id: string, prompt: readonly number[], maxTokens: number, policy?: Policy): GenerateRequest {
  return greedyRequest(id, prompt, maxTokens, policy, { captureLogprobs: true });
}

function run(events: readonly TokenEvent[]): { tokens: number[]; logprobs: Float32Array } {
  const done = events.at(-1);
  assert.ok(done?.type === 'done' && done.capturedLogprobs);
  return { tokens: events.flatMap((e) => (e.type === 'token' ? [e.tokenId] : [])), logprobs: done.capturedLogprobs };
}

function worstGap(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return worst;
}

t.test('fp16 KV: the same greedy tokens as fp32 KV, logprobs within the measured tolerance', { skip: skip ?? false }, async (t) => {
  const f32 = await openTestCore(STORIES_DIR, { prefillChunk: 64 });
  const f16 = await openTestCore(STORIES_DIR, { prefillChunk: 64, kvDtype: 'fp16' });
  t.teardown(async () => {
    await f32.close();
    await f16.close();
  });
  let worst = 0;
  for (const [i, offset] of [0, 500, 2000].entries()) {
    const prompt = storyTokens(150, offset);
    const want = run(await f32.generate(request(`a${i}`, prompt, 48)));
    const got = run(await f16.generate(request(`b${i}`, prompt, 48)));
    assert.deepEqual(got.tokens, want.tokens, `prompt at ${offset}: same greedy tokens`);
    worst = Math.max(worst, worstGap(got.logprobs, want.logprobs));
  }
  t.comment(`measured: largest logprob gap fp16 vs fp32 KV ${worst.toExponential(2)}`);
  assert.ok(worst < LOGPROB_TOLERANCE, `logprobs differ by ${worst}`);
  assert.ok(worst > 0, 'an fp16 cache that changes nothing was not used');
});

t.test('fp16 KV: the same budget admits twice the sequences, with half the bytes per token', { skip: skip ?? false }, async (t) => {
  const spec = { numLayers: 5, numKvHeads: 4, headDim: 8 };
  assert.equal(kvBytesPerToken({ ...spec, dtype: 'fp16' }) * 2, kvBytesPerToken(spec));
  // Each request reserves one 64-entry block per layer (20 prompt + 40 new tokens): room for 3 at fp32.
  const probe = await openTestCore(STORIES_DIR);
  const perToken = kvBytesPerToken({
    numLayers: probe.checkpoint.spec.numLayers,
    numKvHeads: probe.checkpoint.spec.numKvHeads,
    headDim: probe.checkpoint.spec.headDim,
  });
  await probe.close();
  const budget = 3 * 64 * perToken;
  const admitted = async (kvDtype: 'fp32' | 'fp16'): Promise<number> => {
    const c = await openTestCore(STORIES_DIR, { kvBudgetBytes: budget, kvDtype });
    t.teardown(() => c.close());
    for (let i = 0; i < 8; i++) c.core.submit(request(`r${i}`, storyTokens(20, 100 * i), 40));
    await c.core.step();
    return c.core.stats().running;
  };
  const f32 = await admitted('fp32');
  const f16 = await admitted('fp16');
  t.comment(`admitted under ${budget} bytes: fp32 ${f32}, fp16 ${f16}`);
  assert.equal(f32, 3);
  assert.equal(f16, 6);
});

t.test('fp16 KV with the prefix cache and an eviction policy: same tokens as fp32 KV', { skip: skip ?? false }, async (t) => {
  const prefix = { blockTokens: 16, maxBytes: 64 * 1024 ** 2 };
  const f32 = await openTestCore(STORIES_DIR, { prefixCache: prefix });
  const f16 = await openTestCore(STORIES_DIR, { prefixCache: prefix, kvDtype: 'fp16' });
  t.teardown(async () => {
    await f32.close();
    await f16.close();
  });
  const system = storyTokens(100);
  const other = [...system, ...storyTokens(40, 300)];
  for (const core of [f32, f16]) await core.generate(request(`warm-${core === f16 ? 16 : 32}`, system, 8));
  const hit16 = await f16.generate(request('hit16', other, 24));
  const done = hit16.at(-1);
  assert.ok(done?.type === 'done');
  assert.equal(done.policy.prefixCache?.status, 'hit');
  const hit32 = run(await f32.generate(request('hit32', other, 24)));
  assert.deepEqual(run(hit16).tokens, hit32.tokens, 'prefix-cache hit on fp16 KV: same greedy tokens');
  assert.ok(worstGap(run(hit16).logprobs, hit32.logprobs) < LOGPROB_TOLERANCE);

  const snap = parsePolicyFile('name: snapkv-25\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.25}\n', '<test>');
  const want = run(await f32.generate(request('e32', storyTokens(200, 800), 32, snap)));
  const got = run(await f16.generate(request('e16', storyTokens(200, 800), 32, snap)));
  assert.deepEqual(got.tokens, want.tokens, 'snapkv on fp16 KV: same greedy tokens');
  assert.ok(worstGap(got.logprobs, want.logprobs) < LOGPROB_TOLERANCE);
});

/**
 * KIVI on stories260K: int8 stays close to the full-precision cache; int4 drifts
 * more. Largest logprob gap measured here (groups of 32, residual 32, 3 prompts of
 * 150 tokens, 48 greedy tokens): kivi-8 3.3e-2, kivi-4 0.14; the tolerance is about
 * 5x the kivi-8 measurement, below kivi-4's.
 */
const KIVI8_TOLERANCE = 0.15;

t.test(
  'kivi-8 on an fp32 cache: the same greedy tokens as full attention, logprobs within tolerance; kivi-4 reports more error',
  { skip: skip ?? false },
  async (t) => {
    const c = await openTestCore(STORIES_DIR, { prefillChunk: 64 });
    t.teardown(() => c.close());
    const kivi = (bits: number): Policy =>
      parsePolicyFile(`name: kivi-${bits}\nkind: kv-quantization\nmethod: kivi\nparams: {bits: ${bits}, groupSize: 32, residual: 32}\n`, '<test>');
    let worst8 = 0;
    let worst4 = 0;
    for (const [i, offset] of [0, 500, 2000].entries()) {
      const prompt = storyTokens(150, offset);
      const want = run(await c.generate(request(`f${i}`, prompt, 48)));
      const got8 = await c.generate(request(`k8-${i}`, prompt, 48, kivi(8)));
      const done = got8.at(-1);
      assert.ok(done?.type === 'done');
      assert.equal(done.policy.kind, 'kv-quantization');
      assert.ok(Number(done.policy.details['quantizedValueEntries']) > 0);
      assert.deepEqual(run(got8).tokens, want.tokens, `kivi-8, prompt at ${offset}: same greedy tokens`);
      worst8 = Math.max(worst8, worstGap(run(got8).logprobs, want.logprobs));
      const got4 = run(await c.generate(request(`k4-${i}`, prompt, 48, kivi(4))));
      // Different tokens make later logprobs incomparable: compare up to the first divergence.
      const same = got4.tokens.findIndex((tok, j) => tok !== want.tokens[j]);
      const upTo = same === -1 ? want.tokens.length : same;
      worst4 = Math.max(worst4, worstGap(got4.logprobs.subarray(0, upTo), want.logprobs.subarray(0, upTo)));
    }
    t.comment(`measured: largest logprob gap vs full attention, kivi-8 ${worst8.toExponential(2)}, kivi-4 ${worst4.toExponential(2)}`);
    assert.ok(worst8 < KIVI8_TOLERANCE, `kivi-8 logprobs differ by ${worst8}`);
    assert.ok(worst8 > 0, 'kivi-8 changed nothing');
    assert.ok(worst4 > worst8, 'int4 codes err more than int8');
  },
);
