/**
 * The prefix cache and the chunked-prefill budget inside the real engine on the
 * real stories260K model: a request that starts with a cached prefix (another
 * request's prompt, or an earlier turn's prompt and answer) gives the same
 * greedy tokens and log-probabilities as a cold prefill; policies that rewrite
 * the KV bypass the cache and say so; concurrent requests under a small token
 * budget per step generate what they generate alone.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { type GenerateRequest, type TokenEvent } from '../../src/engine/types.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { parsePolicyFile, type Policy } from '../../src/policies/registry.js';
import type { PolicyReport } from '../../src/policies/types.js';
import { openTestCore, type TestCore } from '../helpers/core.js';
import { missingShared, sharedPath, STORIES_DIR } from '../helpers/shared.js';
import { greedyRequest } from '../helpers/requests.js';

const skip = missingShared('models', 'stories260K') ?? missingShared('data', 'text', 'tinystories_niklas6.txt');
const TOLERANCE = 1e-4;

function storyTokens(n: number, offset = 0): number[] {
  const text = readFileSync(sharedPath('data', 'text', 'tinystories_niklas6.txt'), 'utf8');
  const ids = loadTokenizer(STORIES_DIR).encode(text, { addSpecialTokens: true });
  return ids.slice(offset, offset + n);
}

function request(id: string, prompt: readonly number[], maxTokens: number, servingPolicy?: Policy): GenerateRequest {
  return greedyRequest(id, prompt, maxTokens, servingPolicy, { captureLogprobs: true });
}

interface Run {
  readonly tokens: number[];
  readonly logprobs: Float32Array;
  readonly report: PolicyReport;
}

function summary(events: readonly TokenEvent[]): Run {
  const done = events.at(-1);
  assert.ok(done?.type === 'done' && done.capturedLogprobs);
  return { tokens: events.flatMap((e) => (e.type === 'token' ? [e.tokenId] : [])), logprobs: done.capturedLogprobs, report: done.policy };
}

function assertSame(got: Run, want: Run, what: string): void {
  assert.deepEqual(got.tokens, want.tokens, `${what}: same greedy tokens`);
  assert.equal(got.logprobs.length, want.logprobs.length);
  let worst = 0;
  for (let i = 0; i < want.logprobs.length; i++) worst = Math.max(worst, Math.abs((got.logprobs[i] ?? 0) - (want.logprobs[i] ?? 0)));
  assert.ok(worst < TOLERANCE, `${what}: logprobs differ by ${worst}`);
}

async function withCores(work: (cached: TestCore, cold: TestCore) => Promise<void>): Promise<void> {
  const cached = await openTestCore(STORIES_DIR, { prefillChunk: 64, prefixCache: { blockTokens: 16, maxBytes: 64 * 1024 ** 2 } });
  const cold = await openTestCore(STORIES_DIR, { prefillChunk: 64 });
  try {
    await work(cached, cold);
  } finally {
    await cached.close();
    await cold.close();
  }
}

t.test('a shared prompt prefix and an earlier turn are reused: same tokens and logprobs as a cold prefill', { skip: skip ?? false }, async () => {
  await withCores(async (cached, cold) => {
    const system = storyTokens(100);
    const first = summary(await cached.generate(request('t1', system, 16)));
    assert.deepEqual(first.report.prefixCache, { status: 'miss', cachedTokens: 0, reason: null });

    // Another request with the same first 100 tokens: 6 whole blocks of 16 are cached.
    const other = [...system, ...storyTokens(40, 300)];
    const hit = summary(await cached.generate(request('o', other, 16)));
    assert.equal(hit.report.prefixCache?.status, 'hit');
    assert.equal(hit.report.prefixCache?.cachedTokens, 96);
    assertSame(hit, summary(await cold.generate(request('o', other, 16))), 'shared prefix');

    // The next turn: the first prompt, its answer, then new text; the answer's KV was kept too (100 + 15 entries: 7 blocks).
    const turn2 = [...system, ...first.tokens, ...storyTokens(30, 500)];
    const second = summary(await cached.generate(request('t2', turn2, 16)));
    assert.equal(second.report.prefixCache?.cachedTokens, 112);
    assertSame(second, summary(await cold.generate(request('t2', turn2, 16))), 'second turn');

    // The same prompt again: its whole blocks come from the cache (140 tokens: 8 blocks), the tail is prefilled.
    const again = summary(await cached.generate(request('again', other, 16)));
    assert.equal(again.report.prefixCache?.cachedTokens, 128);
    const exact = system.slice(0, 96);
    await cached.generate(request('exact-1', exact, 4));
    const exactHit = summary(await cached.generate(request('exact-2', exact, 4)));
    assert.equal(exactHit.report.prefixCache?.cachedTokens, 95, 'a prompt of whole cached blocks: all but its last token, whose logits start generation');
    assertSame(exactHit, summary(await cold.generate(request('exact', exact, 4))), 'whole-block prompt');
    assertSame(again, hit, 'identical prompt');
    assert.ok(cached.core.stats().prefixCacheBytes > 0);
    assert.equal(cached.core.stats().kvBytesUsed, 0, 'sequence KV is released; the cache is accounted apart');
  });
});

t.test('policies that rewrite the KV bypass the cache and report why; Quest (dense prefill, whole cache) shares it', { skip: skip ?? false }, async () => {
  await withCores(async (cached, cold) => {
    const prompt = storyTokens(120);
    await cached.generate(request('warm', prompt, 4));
    const snapkv = parsePolicyFile('name: snapkv-50\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.5}\n', '<test>');
    const evicted = summary(await cached.generate(request('snap', prompt, 8, snapkv)));
    assert.equal(evicted.report.prefixCache?.status, 'bypassed');
    assert.equal(evicted.report.prefixCache?.cachedTokens, 0);
    assert.match(evicted.report.prefixCache?.reason ?? '', /eviction/);
    assertSame(evicted, summary(await cold.generate(request('snap', prompt, 8, snapkv))), 'bypassed snapkv');

    const sink = parsePolicyFile('name: sw\nkind: sparse-attention\nmethod: sink-window\nparams: {sinkTokens: 4, windowTokens: 32}\n', '<test>');
    assert.equal(summary(await cached.generate(request('sw', prompt, 4, sink))).report.prefixCache?.status, 'bypassed');

    const quest = parsePolicyFile('name: quest-all\nkind: sparse-attention\nmethod: quest\nparams: {budget: 1, pageSize: 16}\n', '<test>');
    const q = summary(await cached.generate(request('q', prompt, 8, quest)));
    assert.equal(q.report.prefixCache?.status, 'hit');
    assertSame(q, summary(await cold.generate(request('q', prompt, 8, quest))), 'quest with a cached prefix');
  });
});

for (const [label, options] of [
  ['a 24-token budget per step', { maxTokensPerStep: 24 }],
  // Chunk sizes then come from the passes' measured times: whatever they are, outputs must not change.
  ['a step latency target (chunks sized from measured pass costs)', { maxTokensPerStep: 24, stepTargetMs: 0.5 }],
] as const) {
  t.test(`concurrent requests under ${label} generate what they generate alone`, { skip: skip ?? false }, async () => {
    const budgeted = await openTestCore(STORIES_DIR, { prefillChunk: 64, ...options });
    const alone = await openTestCore(STORIES_DIR, { prefillChunk: 64 });
    try {
      const prompts = [storyTokens(90, 0), storyTokens(10, 200), storyTokens(150, 400), storyTokens(33, 700)];
      const reqs = prompts.map((p, i) => request(`r${i}`, p, 20));
      const core = budgeted.core;
      for (const r of reqs) core.submit(r);
      const events = new Map<string, TokenEvent[]>();
      for (let step = 0; core.hasWork() && step < 1000; step++) {
        await core.step();
        for (const o of core.drain()) {
          assert.ok(!('error' in o), JSON.stringify(o));
          if ('event' in o) events.set(o.id, [...(events.get(o.id) ?? []), o.event]);
        }
      }
      for (const [i, r] of reqs.entries()) assertSame(summary(events.get(r.id) ?? []), summary(await alone.generate(r)), `request ${i}`);
    } finally {
      await budgeted.close();
      await alone.close();
    }
  });
}
