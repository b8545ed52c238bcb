/**
 * EngineCore with a prefix cache and a token budget per step, on the fake
 * ModelRunner (no onnxruntime, no ../shared): a repeated prefix is not
 * prefilled again, cached blocks live in the KV budget and give way to an
 * admission, eviction policies bypass the cache and say so, and under a
 * budget every decoding sequence advances every step while a long prompt
 * prefills in bounded chunks, raised to keep pace with the workload's mix.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { EngineCore, type CoreOutput } from '../../../src/engine/engine-core.js';
import { type TokenEvent } from '../../../src/engine/types.js';
import { kvBytesPerToken, KV_BLOCK } from '../../../src/kv/sequence-kv.js';
import { parsePolicyFile } from '../../../src/policies/registry.js';
import { FakeRunner, fakeSpec, fakeTokenizer } from '../../helpers/fake-model.js';
import { greedyRequest } from '../../helpers/requests.js';

const spec = fakeSpec();
const perToken = kvBytesPerToken({ numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim });

function rig(options: { kvBudgetBytes?: number; maxTokensPerStep?: number; prefix?: boolean }) {
  const runners = { plain: new FakeRunner(spec), stats: new FakeRunner(spec, true), quest: new FakeRunner(spec) };
  const core = new EngineCore(
    runners.plain,
    (v) => (v === 'reference' ? Promise.reject(new Error('no reference')) : Promise.resolve(runners[v])),
    spec,
    fakeTokenizer(spec.vocabSize),
    {
      maxConcurrent: 8,
      maxQueue: 16,
      kvBudgetBytes: options.kvBudgetBytes ?? 1 << 30,
      contextLength: 4096,
      prefillChunk: 64,
      variants: ['stats', 'quest'],
      ...(options.maxTokensPerStep !== undefined ? { maxTokensPerStep: options.maxTokensPerStep } : {}),
      ...(options.prefix === false ? {} : { prefixCache: { blockTokens: 16, maxBytes: 1 << 30 } }),
    },
  );
  const outputs: CoreOutput[] = [];
  return {
    core,
    runners,
    async run(limit = 1000): Promise<void> {
      for (let i = 0; i < limit && core.hasWork(); i++) {
        await core.step();
        outputs.push(...core.drain());
        // As the worker does: outputs out, then the work no token waits for.
        core.maintain();
      }
      outputs.push(...core.drain());
    },
    events: (id: string): TokenEvent[] => outputs.flatMap((o) => (o.id === id && 'event' in o ? [o.event] : [])),
    errors: (): string[] => outputs.flatMap((o) => ('error' in o ? [o.error.message] : [])),
  };
}

const request = greedyRequest;

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
const tokens = (events: readonly TokenEvent[]): number[] => events.flatMap((e) => (e.type === 'token' ? [e.tokenId] : []));
const done = (events: readonly TokenEvent[]) => {
  const d = events.at(-1);
  assert.ok(d?.type === 'done');
  return d;
};

t.test('a repeated prefix is attached from the cache, only the rest is prefilled, and the report says so', async () => {
  const r = rig({});
  r.core.submit(request('a', range(2, 40), 3));
  await r.run();
  assert.deepEqual(done(r.events('a')).policy.prefixCache, { status: 'miss', cachedTokens: 0, reason: null });
  const before = r.runners.plain.passes.length;
  r.core.submit(request('b', [...range(2, 32), 60, 61, 62], 3));
  await r.run();
  // 2 whole blocks (32 tokens) cached; 3 prompt tokens prefilled in one pass, then 2 decode steps.
  assert.deepEqual(
    r.runners.plain.passes.slice(before).map((p) => p.newTokens),
    [3, 1, 1],
  );
  assert.deepEqual(done(r.events('b')).policy.prefixCache, { status: 'hit', cachedTokens: 32, reason: null });
  assert.deepEqual(tokens(r.events('b')), [63, 0, 1]);
  assert.ok(r.core.stats().prefixCacheBytes >= 2 * 16 * perToken);
  assert.equal(r.core.stats().kvBytesUsed, 0);
});

t.test('cached blocks count in the KV budget and are evicted to admit a request', async () => {
  const budget = 2 * KV_BLOCK * perToken;
  const r = rig({ kvBudgetBytes: budget });
  r.core.submit(request('a', range(2, 60), 4));
  await r.run();
  const held = r.core.stats().prefixCacheBytes;
  assert.ok(held > 0, 'a left blocks behind');
  assert.equal(r.core.stats().kvBytesReserved, held, 'the blocks are reserved in the pool');
  // b needs the whole budget: its admission evicts the cache instead of waiting forever.
  r.core.submit(
    request(
      'b',
      Array.from({ length: 100 }, (_, i) => 3 + (i % 50)),
      20,
    ),
  );
  await r.run();
  assert.deepEqual(r.errors(), []);
  assert.equal(tokens(r.events('b')).length, 20);
  assert.ok(r.core.stats().kvBytesReserved <= budget);
});

t.test('an eviction policy bypasses the cache (reported) and prefills its whole prompt', async () => {
  const r = rig({});
  r.core.submit(request('a', range(2, 40), 2));
  await r.run();
  const snap = parsePolicyFile('name: snap\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.5, observationWindow: 8}\n', '<test>');
  r.core.submit(request('s', range(2, 40), 2, snap));
  await r.run();
  const report = done(r.events('s')).policy.prefixCache;
  assert.equal(report?.status, 'bypassed');
  assert.equal(report?.cachedTokens, 0);
  assert.match(report?.reason ?? '', /eviction/);
  assert.equal(
    r.runners.stats.passes.reduce((n, p) => n + (p.newTokens > 1 ? p.newTokens : 0), 0),
    40,
    'the whole prompt prefilled on the stats graph',
  );
});

t.test('under a budget, every decoding sequence advances each step while a long prompt prefills in bounded chunks', async () => {
  const r = rig({ maxTokensPerStep: 16, prefix: false });
  for (let i = 0; i < 4; i++) r.core.submit(request(`d${i}`, range(2 + i, 4), 40));
  await r.run(1); // the four short prompts in one padded pass
  await r.run(1);
  const before = r.runners.plain.passes.length;
  r.core.submit(
    request(
      'long',
      Array.from({ length: 100 }, (_, i) => 10 + (i % 50)),
      2,
    ),
  );
  const counts = (): number[] => ['d0', 'd1', 'd2', 'd3'].map((id) => tokens(r.events(id)).length);
  for (let step = 0; step < 10; step++) {
    const was = counts();
    await r.run(1);
    assert.deepEqual(
      counts(),
      was.map((n) => n + 1),
      `step ${step}: every stream got a token`,
    );
  }
  const prefill = r.runners.plain.passes
    .slice(before)
    .filter((p) => p.batch === 1 && p.newTokens > 1)
    .map((p) => p.newTokens);
  // 16 - 4 decode tokens = 12 per step (the 4 streams keep decoding).
  assert.deepEqual(prefill.slice(0, 8), [12, 12, 12, 12, 12, 12, 12, 12]);
  await r.run();
  assert.equal(tokens(r.events('long')).length, 2);
});

t.test('under a budget, prefill keeps pace with the workload: long prompts against short answers get more than the budget leaves', async () => {
  const prompt = (n: number, seed: number): number[] => Array.from({ length: n }, (_, k) => 2 + ((seed + k) % 50));
  const chunks = async (pastPrompt: number, pastAnswer: number): Promise<number[]> => {
    const r = rig({ maxTokensPerStep: 16, prefix: false });
    // Finished requests set the measured mix: pastPrompt prompt tokens per pastAnswer generated.
    for (let i = 0; i < 4; i++) r.core.submit(request(`past${i}`, prompt(pastPrompt, i), pastAnswer));
    await r.run();
    const ids = ['d0', 'd1', 'd2', 'd3', 'd4', 'd5'];
    for (const [i, id] of ids.entries()) r.core.submit(request(id, prompt(4, i), 100));
    for (let step = 0; step < 200 && ids.some((id) => tokens(r.events(id)).length === 0); step++) await r.run(1);
    const before = r.runners.plain.passes.length;
    r.core.submit(request('long', prompt(200, 7), 2));
    await r.run(3);
    assert.deepEqual(r.errors(), []);
    return r.runners.plain.passes
      .slice(before)
      .filter((p) => p.batch === 1 && p.newTokens > 1)
      .map((p) => p.newTokens);
  };
  // 4-token prompts for 40-token answers: 0.1 x 1.5 x 6 streams asks 1 token per step; the budget's 16 - 6 = 10 stands.
  assert.deepEqual(await chunks(4, 40), [10, 10, 10]);
  // 60-token prompts for 10-token answers: 6 prompt tokens per answer token, x 1.5 x 6 streams = 54 per step.
  assert.deepEqual(await chunks(60, 10), [54, 54, 54]);
});
