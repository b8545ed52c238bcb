/**
 * Engine throughput on one model and weight dtype, in its own process:
 * batch-1 decode, prefills of each `--prefill` length (default 512 and 1024, in passes of at most
 * the engine's default prefill chunk as the server runs them, the lengths taking turns), batch-8
 * aggregate decode (all in-process
 * against the compiled graph), and the whole serving path through the worker
 * for the per-token overhead outside onnxruntime. Prints one JSON line.
 */
import { parseArgs } from 'node:util';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING } from '../../src/engine/types.js';
import type { WeightDtype } from '../../src/model/compile/decoder-graph.js';
import { decodeStep, openTestModel } from '../helpers/session.js';
import { batchGatherBench, type BatchGatherPoint } from './batch-gather-bench.js';
import { timeDecodeSteps, timePrefills } from './engine-timing.js';
import { distribution, median, type Distribution } from './stats.js';

/** One prefill length: the median of its passes. */
export interface PrefillPoint {
  readonly tokens: number;
  readonly ms: number;
  readonly tokensPerSecond: number;
  /** Matrix and attention FLOPs actually performed per second (see below). */
  readonly gflops: number;
}

export interface EngineBenchResult {
  readonly dtype: WeightDtype;
  readonly weightBytes: number;
  readonly parameters: number;
  readonly decodeStepMs: Distribution;
  readonly decodeTokensPerSecond: number;
  /** Every prefill length, shortest first; the fields below repeat the longest. */
  readonly prefills: readonly PrefillPoint[];
  readonly prefillTokens: number;
  readonly prefillMs: number;
  readonly prefillTokensPerSecond: number;
  readonly prefillGflops: number;
  readonly batch8StepMs: Distribution;
  readonly batch8TokensPerSecond: number;
  readonly servedInterTokenMs: Distribution;
  readonly servedTokensPerSecond: number;
  readonly overheadPerTokenMs: number;
  /** Batched decode at a few hundred positions: the gathered past kept across steps against gathered afresh. */
  readonly batchGather: BatchGatherPoint;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      dtype: { type: 'string', default: 'fp32' },
      steps: { type: 'string', default: '48' },
      prefill: { type: 'string', default: '512,1024' },
      threads: { type: 'string', default: '2' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const dtype = values.dtype as WeightDtype;
  const steps = Number(values.steps);
  const prefillLens = values.prefill
    .split(',')
    .map(Number)
    .sort((a, b) => a - b);
  const threads = Number(values.threads);
  process.env['CAPSERVE_BENCH_THREADS'] = String(threads);
  const m = await openTestModel(values.model, dtype, false, { threads, cacheDir: values['cache-dir'] });
  const spec = m.checkpoint.spec;
  const V = spec.vocabSize;
  const prompt = Array.from({ length: 16 }, (_, i) => 10 + ((i * 37) % (V - 20)));

  // batch-1 decode, then the prefills (the lengths take turns, 3 passes each)
  const stepMs = await timeDecodeSteps(m, steps);
  const prefillRuns = await timePrefills(m, prefillLens, 3);
  const parameters = m.parameters;
  // FLOPs actually performed: every layer's matrices for every token, the vocabulary projection for
  // the last position only (logit_index), the embedding is a gather; attention is causal.
  const h = spec.hiddenSize;
  const layerParams = h * (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim + spec.numHeads * spec.headDim * h + 3 * h * spec.intermediateSize;
  const prefills: PrefillPoint[] = prefillLens.map((len, i) => {
    const ms = median(prefillRuns[i] ?? []);
    const attnFlops = 2 * 2 * spec.numLayers * spec.numHeads * spec.headDim * ((len * (len + 1)) / 2);
    const flops = 2 * spec.numLayers * layerParams * len + 2 * spec.vocabSize * h + attnFlops;
    return { tokens: len, ms, tokensPerSecond: len / (ms / 1000), gflops: flops / 1e9 / (ms / 1000) };
  });
  const longest = prefills[prefills.length - 1];
  if (longest === undefined) throw new Error('--prefill needs at least one length');

  // batch-8 decode
  const kvs = [];
  for (let b = 0; b < 8; b++)
    kvs.push(
      (
        await m.prefill(
          prompt.map((t) => (t + b) % V),
          false,
          steps + 8,
        )
      ).kv,
    );
  const b8: number[] = [];
  for (let s = 0; s < Math.ceil(steps / 2); s++) {
    const t0 = performance.now();
    await decodeStep(
      m,
      kvs,
      kvs.map((_, b) => 50 + b + s),
    );
    b8.push(performance.now() - t0);
  }
  for (const k of kvs) k.release();
  // batch-32 decode at 350 positions (the serving bench's 256-token prompts partway through 128 out)
  const batchGather = await batchGatherBench(m, 32, 350, Math.max(9, Math.ceil(steps / 4)));
  const weightBytes = m.weightBytes;
  await m.close();

  // the whole serving path: worker, scheduler, sampling, detokenization, messaging
  const engine = await createLocalEngine({ modelDir: values.model, cacheDir: values['cache-dir'], weightDtype: dtype, threads, maxConcurrent: 1 });
  const itl: number[] = [];
  let last = 0;
  let count = 0;
  const t0 = performance.now();
  for await (const ev of engine.generate({
    id: 'bench',
    promptTokens: prompt,
    policy: 'full',
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: steps, ignoreEos: true },
  })) {
    const now = performance.now();
    if (ev.type === 'token') {
      if (count > 0) itl.push(now - last);
      count += 1;
    }
    last = now;
  }
  const servedMs = performance.now() - t0;
  await engine.close();

  const decodeMed = median(stepMs);
  const servedItl = distribution(itl);
  const result: EngineBenchResult = {
    dtype,
    weightBytes,
    parameters,
    decodeStepMs: distribution(stepMs),
    decodeTokensPerSecond: 1000 / decodeMed,
    prefills,
    prefillTokens: longest.tokens,
    prefillMs: longest.ms,
    prefillTokensPerSecond: longest.tokensPerSecond,
    prefillGflops: longest.gflops,
    batch8StepMs: distribution(b8),
    batch8TokensPerSecond: (8 * 1000) / median(b8),
    servedInterTokenMs: servedItl,
    servedTokensPerSecond: (count * 1000) / servedMs,
    overheadPerTokenMs: servedItl.p50 - decodeMed,
    batchGather,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`engine-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
