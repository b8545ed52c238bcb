/**
 * The engine (EngineCore: scheduler, continuous batching, chunked prefill,
 * sampling) serving MoE models through the MoE runner, resident and offloaded,
 * against the float64 reference's greedy continuations; and the real worker
 * path (LocalEngine) serving a generated mixtral and qwen3_moe with the default edgemoe params.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { EngineCore, type CoreOutput } from '../../src/engine/engine-core.js';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING, type TokenEvent } from '../../src/engine/types.js';
import { parsePolicyFile, type Policy } from '../../src/policies/registry.js';
import type { Architecture } from '../../src/model/spec.js';
import type { ModelRunner } from '../../src/runtime/model-runner.js';
import { referenceGreedy } from '../reference/forward.js';
import { moeFixture, promptIds, type MoeFixture } from './moe-helpers.js';

const STEPS = 8;

async function greedyThroughEngine(f: MoeFixture, runner: ModelRunner, prompts: number[][]): Promise<number[][]> {
  const spec = f.checkpoint.spec;
  const core = new EngineCore(runner, () => Promise.reject(new Error('no stats variant for MoE')), spec, f.checkpoint.tokenizer, {
    maxConcurrent: 4,
    maxQueue: 8,
    kvBudgetBytes: 64 * 1024 * 1024,
    contextLength: 512,
    variants: [],
    prefillChunk: 16,
  });
  prompts.forEach((p, i) =>
    core.submit({ id: `r${i}`, promptTokens: p, policy: 'full', sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: STEPS, ignoreEos: true } }),
  );
  const tokens = prompts.map((): number[] => []);
  const take = (outs: CoreOutput[]): void => {
    for (const o of outs) {
      if ('error' in o) throw new Error(`engine error ${o.error.code}: ${o.error.message}`);
      if ('event' in o && o.event.type === 'token') tokens[Number(o.id.slice(1))]!.push(o.event.tokenId);
    }
  };
  while (core.hasWork()) {
    await core.step();
    take(core.drain());
  }
  take(core.drain());
  return tokens;
}

for (const [i, arch] of (['mixtral', 'qwen2_moe', 'qwen3_moe'] as Architecture[]).entries()) {
  t.test(`${arch}: the engine's greedy continuations (batched, chunked prefill) equal the reference, resident and offloaded`, async (t) => {
    const f = await moeFixture(arch, 70 + i);
    const V = f.checkpoint.spec.vocabSize;
    const prompts = [promptIds(20, V, 1), promptIds(37, V, 2), promptIds(9, V, 3)];
    const want = prompts.map((p) => referenceGreedy(f.checkpoint.spec, f.checkpoint.weights, p, STEPS));
    const expertBytes = await f.open({ budgetBytes: 0 }).then(async (r) => {
      const b = r.manifest.experts.find((e) => e.bits === 32)?.bytes ?? 0;
      await r.release();
      return b;
    });
    for (const cfg of [
      { name: 'resident', preload: true },
      { name: 'offloaded, 2-expert LRU cache, prefetch', budgetBytes: 2 * expertBytes, prefetch: true },
      { name: 'offloaded, no cache', budgetBytes: 0, prefetch: false },
    ]) {
      const runner = await f.open(cfg);
      const got = await greedyThroughEngine(f, runner, prompts);
      const s = runner.stats();
      await runner.release();
      t.comment(
        `${arch} ${cfg.name}: hits ${s['expertCacheHits']}, misses ${s['expertCacheMisses']}, prefetch hits ${s['expertPrefetchHits']}, peak resident ${s['expertResidentBytesPeak']}`,
      );
      assert.deepEqual(got, want, `${cfg.name}: greedy continuation differs from the reference`);
    }
  });
}

for (const [i, arch] of (['mixtral', 'qwen3_moe'] as Architecture[]).entries()) {
  t.test(`the worker serves a generated ${arch} with the default edgemoe params (adaptive bitwidths)`, async (t) => {
    const f = await moeFixture(arch, 90 + i);
    const engine = await createLocalEngine({ modelDir: f.checkpoint.dir, cacheDir: f.compiled.dir.replace(/\/[^/]+$/, ''), threads: 1, maxConcurrent: 2 });
    try {
      const ids: number[] = [];
      for await (const ev of engine.generate({
        id: 'w1',
        promptTokens: promptIds(12, f.checkpoint.spec.vocabSize),
        policy: 'full',
        sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 6, ignoreEos: true },
      })) {
        if (ev.type === 'token') ids.push(ev.tokenId);
      }
      t.comment(`worker generated ${ids.join(' ')}`);
      assert.equal(ids.length, 6);
    } finally {
      await engine.close();
    }
  });
}

/**
 * The attention block is shared with the dense graph, so MoE layers have the stats
 * and Quest variants too: every KV policy serves a Qwen3-MoE (keep-everything
 * parameters reproduce full attention exactly; real budgets evict), with the
 * variants' layer graphs sharing the served runner's expert store.
 */
t.test('qwen3_moe under the KV policies: snapkv, h2o, streaming-llm and quest run on the stats / quest layer graphs', async (t) => {
  const f = await moeFixture('qwen3_moe', 95);
  const runner = await f.open({ preload: true });
  const spec = f.checkpoint.spec;
  const core = new EngineCore(
    runner,
    (variant) => (variant === 'reference' ? Promise.reject(new Error('no reference')) : runner.variant(variant)),
    spec,
    f.checkpoint.tokenizer,
    {
      maxConcurrent: 4,
      maxQueue: 8,
      kvBudgetBytes: 64 * 1024 * 1024,
      contextLength: 512,
      variants: ['stats', 'quest'],
      prefillChunk: 64,
    },
  );
  const policy = (yaml: string): Policy => parsePolicyFile(yaml, '<test>');
  const run = async (id: string, servingPolicy?: Policy): Promise<Extract<TokenEvent, { type: 'done' }>> => {
    core.submit({
      id,
      promptTokens: promptIds(48, spec.vocabSize, 5),
      policy: servingPolicy?.name ?? 'full',
      ...(servingPolicy ? { servingPolicy } : {}),
      sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: STEPS, ignoreEos: true },
      captureLogprobs: true,
    });
    let done: Extract<TokenEvent, { type: 'done' }> | null = null;
    while (core.hasWork()) {
      await core.step();
      for (const o of core.drain()) {
        if ('error' in o) throw new Error(`${o.error.code}: ${o.error.message}`);
        if ('event' in o && o.event.type === 'done') done = o.event;
      }
    }
    if (done === null || done.capturedLogprobs === undefined) throw new Error(`${id} did not finish`);
    return done;
  };
  try {
    const full = await run('full');
    for (const p of [
      policy('name: snapkv-all\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 1, observationWindow: 16, compressEvery: 0}\n'),
      policy('name: h2o-all\nkind: kv-eviction\nmethod: h2o\nparams: {budget: 1, compressEvery: 1}\n'),
      policy('name: quest-all\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, budget: 1, denseLayers: 0}\n'),
    ]) {
      const d = await run(p.name, p);
      let diff = 0;
      d.capturedLogprobs?.forEach((v, j) => (diff = Math.max(diff, Math.abs(v - full.capturedLogprobs![j]!))));
      t.comment(`qwen3_moe ${p.name}: max |log p - log p_full| = ${diff.toExponential(2)}`);
      assert.ok(diff <= 1e-5, `${p.name}: ${diff}`);
    }
    const snap = await run('snapkv-25', policy('name: snapkv-25\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.25}\n'));
    t.comment(`qwen3_moe snapkv-25: kept ${snap.policy.kvTokensRetained.toFixed(1)} of ${snap.policy.contextTokens}`);
    assert.ok(snap.policy.compressionRatio < 0.5);
    const streaming = await run(
      'streaming-llm-25',
      policy('name: streaming-llm-25\nkind: kv-eviction\nmethod: streaming-llm\nparams: {budget: 0.25, sinkTokens: 4, compressEvery: 1}\n'),
    );
    assert.ok(streaming.policy.compressionRatio < 0.5);
    const quest = await run(
      'quest-25',
      policy('name: quest-25\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, budget: 0.25, denseLayers: 0}\n'),
    );
    assert.equal(quest.usage.completionTokens, STEPS);
    const passes = core.stats().passes;
    t.comment(`passes: ${JSON.stringify(passes)}`);
    assert.ok(passes.stats > 0 && passes.quest > 0);
  } finally {
    await runner.release();
  }
});
