/**
 * EngineCore (schedule -> execute -> update) on a fake ModelRunner: no
 * onnxruntime, no ../shared. The fake's logits always pick last id + 1, so
 * every generated token is known in advance.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { EngineCore, type CoreOutput } from '../../../src/engine/engine-core.js';
import { type TokenEvent } from '../../../src/engine/types.js';
import { kvBytesPerToken, KV_BLOCK } from '../../../src/kv/sequence-kv.js';
import type { TextTokenizer } from '../../../src/model/tokenizer-types.js';
import { parsePolicyFile, type Policy } from '../../../src/policies/registry.js';
import type { GraphVariant } from '../../../src/policies/runtime.js';
import { FakeRunner, fakeSpec, fakeTokenizer } from '../../helpers/fake-model.js';
import { greedyRequest } from '../../helpers/requests.js';

const spec = fakeSpec();

interface Rig {
  readonly core: EngineCore;
  readonly runners: Record<'plain' | 'stats' | 'quest', FakeRunner>;
  readonly outputs: CoreOutput[];
  /** Steps until no work is left (at most `limit`). */
  run(limit?: number): Promise<void>;
  events(id: string): TokenEvent[];
  error(id: string): string | null;
}

function rig(
  options: {
    kvBudgetBytes?: number;
    prefillChunk?: number;
    variants?: readonly Exclude<GraphVariant, 'plain'>[];
    tokenizer?: TextTokenizer;
    maxConcurrent?: number;
  } = {},
): Rig {
  const runners = { plain: new FakeRunner(spec), stats: new FakeRunner(spec, true), quest: new FakeRunner(spec) };
  const core = new EngineCore(
    runners.plain,
    (v) => (v === 'reference' ? Promise.reject(new Error('no reference')) : Promise.resolve(runners[v])),
    spec,
    options.tokenizer ?? fakeTokenizer(spec.vocabSize),
    {
      maxConcurrent: options.maxConcurrent ?? 8,
      maxQueue: 16,
      kvBudgetBytes: options.kvBudgetBytes ?? 1 << 30,
      contextLength: 4096,
      prefillChunk: options.prefillChunk ?? 32,
      variants: options.variants ?? ['stats', 'quest'],
    },
  );
  const outputs: CoreOutput[] = [];
  return {
    core,
    runners,
    outputs,
    async run(limit = 1000) {
      for (let i = 0; i < limit && core.hasWork(); i++) {
        await core.step();
        outputs.push(...core.drain());
      }
      outputs.push(...core.drain());
    },
    events: (id) => outputs.flatMap((o) => (o.id === id && 'event' in o ? [o.event] : [])),
    error: (id) => outputs.flatMap((o) => (o.id === id && 'error' in o ? [o.error.message] : []))[0] ?? null,
  };
}

const request = greedyRequest;

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
const tokens = (events: readonly TokenEvent[]): number[] => events.flatMap((e) => (e.type === 'token' ? [e.tokenId] : []));
const policy = (yaml: string): Policy => parsePolicyFile(yaml, '<test>');

t.test('a request prefills in chunks, then decodes one token per step, and frees its KV', async () => {
  const r = rig({ prefillChunk: 32 });
  r.core.submit(request('a', range(2, 40), 3));
  await r.run();
  assert.deepEqual(tokens(r.events('a')), [42, 43, 44]);
  assert.deepEqual(
    r.runners.plain.passes.map((p) => p.newTokens),
    [32, 8, 1, 1],
  );
  const done = r.events('a').at(-1);
  assert.ok(done?.type === 'done' && done.finishReason === 'length');
  assert.equal(r.core.stats().kvBytesReserved, 0);
});

t.test('admission waits for KV budget: the second request starts when the first frees its reservation', async () => {
  const perSeq = KV_BLOCK * kvBytesPerToken({ numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim });
  const r = rig({ kvBudgetBytes: perSeq });
  r.core.submit(request('a', range(2, 10), 4));
  r.core.submit(request('b', range(20, 10), 4));
  await r.core.step();
  assert.deepEqual([r.core.stats().running, r.core.stats().waiting], [1, 1]);
  await r.run();
  assert.deepEqual(tokens(r.events('a')), [12, 13, 14, 15]);
  assert.deepEqual(tokens(r.events('b')), [30, 31, 32, 33]);
  // Never both at once: every pass has one row.
  assert.ok(r.runners.plain.passes.every((p) => p.batch === 1));
  // A request that can never fit is refused at once, naming the budget.
  r.core.submit(request('huge', range(2, 10), 500));
  await r.run();
  assert.match(r.error('huge') ?? '', /KV budget/);
});

t.test('fresh short prompts share one prefill pass; decoding sequences share one pass per variant', async () => {
  const r = rig();
  const snap = policy('name: snap\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.5, observationWindow: 4, compressEvery: 0}\n');
  const h2o = policy('name: h2o-t\nkind: kv-eviction\nmethod: h2o\nparams: {budget: 0.5, compressEvery: 2}\n');
  r.core.submit(request('p1', range(2, 6), 4));
  r.core.submit(request('p2', range(10, 6), 4));
  r.core.submit(request('snap', range(20, 12), 4, snap));
  r.core.submit(request('h2o', range(40, 12), 4, h2o));
  await r.run();
  for (const id of ['p1', 'p2', 'snap', 'h2o']) assert.equal(r.events(id).at(-1)?.type, 'done', id);
  // p1 and p2 prefill together (batch 2, padded to 6).
  assert.deepEqual([r.runners.plain.passes[0]?.batch, r.runners.plain.passes[0]?.newTokens], [2, 6]);
  // Both eviction policies prefill on the statistics graph; after prefill SnapKV decodes on the plain
  // graph with the plain sequences, H2O (evicting while decoding) stays on the statistics graph.
  assert.deepEqual(r.runners.stats.passes.filter((p) => p.newTokens > 1).length, 2);
  assert.ok(r.runners.stats.passes.filter((p) => p.newTokens === 1).every((p) => p.batch === 1 && p.attnWindow === 1));
  assert.ok(
    r.runners.plain.passes.some((p) => p.newTokens === 1 && p.batch === 3),
    'snap decodes batched with p1 and p2',
  );
  const report = r.events('snap').at(-1);
  assert.ok(report?.type === 'done' && report.policy.details['evictions'] === 1);
});

t.test('a sequence whose own update fails ends alone; the rest of its batch goes on', async () => {
  const inner = fakeTokenizer(spec.vocabSize);
  // The detokenizer of any sequence whose prompt starts with 50 throws on its first token.
  const tokenizer: TextTokenizer = {
    ...inner,
    createDecodeStream: (o) => {
      const s = inner.createDecodeStream(o);
      return o?.context?.[0] === 50
        ? {
            ...s,
            push: () => {
              throw new Error('detokenizer broke');
            },
          }
        : s;
    },
  };
  const r = rig({ tokenizer });
  r.core.submit(request('bad', range(50, 4), 3));
  r.core.submit(request('good', range(2, 4), 3));
  await r.run();
  assert.equal(r.runners.plain.passes[0]?.batch, 2, 'both prefilled in one pass');
  assert.match(r.error('bad') ?? '', /detokenizer broke/);
  assert.deepEqual(tokens(r.events('good')), [6, 7, 8]);
});

t.test('a failed forward pass fails the sequences in it, never the loop', async () => {
  const r = rig();
  r.runners.quest.failOnToken = 11; // the quest sequence's first decode input
  const quest = policy('name: q\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, topPages: 1}\n');
  r.core.submit(request('q', range(2, 9), 3, quest));
  r.core.submit(request('plain', range(20, 40), 3));
  await r.run();
  assert.match(r.error('q') ?? '', /injected pass failure/);
  assert.deepEqual(tokens(r.events('plain')), [60, 61, 62]);
  assert.equal(r.core.stats().kvBytesReserved, 0);
});

t.test('aborts are handled between steps: the sequence ends with finish reason abort and frees its KV', async () => {
  const r = rig();
  r.core.submit(request('a', range(2, 4), 50));
  await r.core.step();
  await r.core.step();
  r.core.abort('a');
  await r.run();
  const done = r.events('a').at(-1);
  assert.ok(done?.type === 'done' && done.finishReason === 'abort');
  assert.equal(tokens(r.events('a')).length, 2);
  assert.equal(r.core.stats().kvBytesReserved, 0);
});

t.test('a policy whose graph variant the model lacks is refused, naming the graph', async () => {
  const r = rig({ variants: [] });
  r.core.submit(request('q', range(2, 4), 2, policy('name: q\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, topPages: 1}\n')));
  r.core.submit(request('h', range(2, 4), 2, policy('name: h\nkind: kv-eviction\nmethod: h2o\nparams: {budget: 0.5}\n')));
  await r.run();
  assert.match(r.error('q') ?? '', /needs the Quest page-selection graph/);
  assert.match(r.error('h') ?? '', /needs the attention-statistics graph/);
});
