/**
 * The engine (EngineCore: scheduler, continuous batching, chunked prefill,
 * sampling) serving MoE models through the MoE runner, resident and offloaded,
 * against the float64 reference's greedy continuations; and the real worker
 * path (LocalEngine) serving a generated mixtral and qwen3_moe with the default edgemoe params.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import { EngineCore, type CoreOutput } from '../../src/engine/engine-core.js';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING } from '../../src/engine/types.js';
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
  test(`${arch}: the engine's greedy continuations (batched, chunked prefill) equal the reference, resident and offloaded`, async (t) => {
    const f = await moeFixture(arch, 70 + i);
    const V = f.checkpoint.spec.vocabSize;
    const prompts = [promptIds(20, V, 1), promptIds(37, V, 2), promptIds(9, V, 3)];
    const want = prompts.map((p) => referenceGreedy(f.checkpoint.spec, f.checkpoint.weights, p, STEPS));
    const expertBytes = (await f.open({ budgetBytes: 0 }).then(async (r) => {
      const b = r.manifest.experts.find((e) => e.bits === 32)?.bytes ?? 0;
      await r.release();
      return b;
    }));
    for (const cfg of [
      { name: 'resident', preload: true },
      { name: 'offloaded, 2-expert LRU cache, prefetch', budgetBytes: 2 * expertBytes, prefetch: true },
      { name: 'offloaded, no cache', budgetBytes: 0, prefetch: false },
    ]) {
      const runner = await f.open(cfg);
      const got = await greedyThroughEngine(f, runner, prompts);
      const s = runner.stats();
      await runner.release();
      t.diagnostic(`${arch} ${cfg.name}: hits ${s['expertCacheHits']}, misses ${s['expertCacheMisses']}, prefetch hits ${s['expertPrefetchHits']}, peak resident ${s['expertResidentBytesPeak']}`);
      assert.deepEqual(got, want, `${cfg.name}: greedy continuation differs from the reference`);
    }
  });
}

for (const [i, arch] of (['mixtral', 'qwen3_moe'] as Architecture[]).entries()) {
  test(`the worker serves a generated ${arch} with the default edgemoe params (adaptive bitwidths)`, async (t) => {
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
      t.diagnostic(`worker generated ${ids.join(' ')}`);
      assert.equal(ids.length, 6);
    } finally {
      await engine.close();
    }
  });
}
