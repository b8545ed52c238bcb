/**
 * EdgeMoE expert offload on a generated MoE (mixtral, preset 135m: 8 layers x 8
 * experts, 400 MB of fp32 experts) whose fp32 expert bytes exceed the cache budget
 * by `--ratio` (default 4x). Each configuration runs in its own process (so peak
 * RSS is its own), `--repeats` times, medians reported:
 *   a  all experts resident (fp32, preloaded, budget = all experts)
 *   b  load on demand, no cache (fp32, budget 0)
 *   c  LRU cache, no prefetch (fp32, budget)
 *   d  frequency-aware cache + prediction + prefetch + adapted bitwidths (budget; widths fit the budget)
 *   e  as d with the adapted expert set at 2x the budget (the cache cannot hold it: offload and prefetch at work)
 * Every configuration decodes the same teacher-forced tokens after the same
 * prompt; fidelity of d and e against a is the KL divergence and top-1 agreement
 * of the next-token distributions. Prints one JSON line.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { StepInputBuilder } from '../../src/engine/step-inputs.js';
import { KvPool } from '../../src/kv/kv-pool.js';
import { kvBytesPerToken, roundToBlock, SequenceKv } from '../../src/kv/sequence-kv.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { compileModel } from '../../src/model/compile/compile-model.js';
import { readMoeManifest } from '../../src/model/compile/moe-compile.js';
import { createModel } from '../../src/model/create/create-model.js';
import { resolveEdgeMoe } from '../../src/policies/expert-offload/edgemoe.js';
import { openMoeRunner, parseEdgeMoeParams } from '../../src/engine/moe-runner-factory.js';
import { machineInfo } from './machine.js';
import { distribution, median, type Distribution } from './stats.js';

type ConfigName = 'a' | 'b' | 'c' | 'd' | 'e';
const CONFIGS: readonly ConfigName[] = ['a', 'b', 'c', 'd', 'e'];
const DESCRIPTION: Record<ConfigName, string> = {
  a: 'all experts resident (fp32)',
  b: 'load on demand, no cache (fp32)',
  c: 'LRU cache, no prefetch (fp32)',
  d: 'frequency cache + prediction + prefetch + adapted bitwidths',
  e: 'as d, adapted expert set 2x the budget',
};

interface RunResult {
  readonly config: ConfigName;
  readonly openMs: number;
  readonly decodeStepMs: Distribution;
  readonly decodeTokensPerSecond: number;
  /** Steps / total decode time, warm-up included. */
  readonly decodeTokensPerSecondOverall: number;
  readonly peakRssMiB: number;
  readonly stats: Readonly<Record<string, number>>;
  readonly logitsFile: string;
}

function paramsFor(config: ConfigName, budget: number, allExperts: number): { params: unknown; preload: boolean } {
  switch (config) {
    case 'a':
      return { params: { budgetBytes: allExperts, bits: 32, cachePolicy: 'lru', prefetch: false }, preload: true };
    case 'b':
      return { params: { budgetBytes: 0, bits: 32, cachePolicy: 'lru', prefetch: false }, preload: false };
    case 'c':
      return { params: { budgetBytes: budget, bits: 32, cachePolicy: 'lru', prefetch: false }, preload: false };
    case 'd':
      return { params: { budgetBytes: budget, bits: 'adaptive', cachePolicy: 'frequency', prefetch: true }, preload: false };
    case 'e':
      return { params: { budgetBytes: budget, bits: 'adaptive', adaptBytes: 2 * budget, cachePolicy: 'frequency', prefetch: true }, preload: false };
  }
}

async function child(values: Record<string, string | boolean | undefined>): Promise<void> {
  const config = values['config'] as ConfigName;
  const modelDir = String(values['model']);
  const steps = Number(values['steps']);
  const budget = Number(values['budget']);
  const threads = Number(values['threads']);
  const checkpoint = loadCheckpoint(modelDir);
  const spec = checkpoint.spec;
  const compiled = compileModel(checkpoint, { cacheDir: String(values['cache-dir']), weightDtype: 'fp32' });
  const allExperts = readMoeManifest(compiled.dir)
    .experts.filter((e) => e.bits === 32)
    .reduce((s, e) => s + e.bytes, 0);
  const { params, preload } = paramsFor(config, budget, allExperts);
  const t0 = performance.now();
  const runner = await openMoeRunner(compiled, spec, { threads, tokenizer: checkpoint.tokenizer, config: resolveEdgeMoe(parseEdgeMoeParams(params)), preload });
  const openMs = performance.now() - t0;
  const V = spec.vocabSize;
  const inputs = new StepInputBuilder(spec.numLayers, spec.numKvHeads, spec.headDim, { slidingWindow: spec.slidingWindow, layerWindows: spec.layerWindows });
  const shape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim };
  const pool = new KvPool(1024 ** 3);
  const prompt = Array.from({ length: 16 }, (_, i) => 10 + ((i * 37) % (V - 20)));
  const cap = roundToBlock(prompt.length + steps + 1);
  if (!pool.tryReserve(cap * kvBytesPerToken(shape))) throw new Error('KV pool too small');
  const kv = new SequenceKv(shape, pool, cap);
  const out = await runner.run(inputs.prefill(kv, prompt, 0));
  kv.append(
    out.presentKeys,
    out.presentValues,
    0,
    prompt.length,
    prompt.map((_, i) => i),
  );
  const logits = new Float32Array(steps * V);
  const stepMs: number[] = [];
  const d0 = performance.now();
  for (let s = 0; s < steps; s++) {
    // Teacher-forced tokens, the same in every configuration, spread over the vocabulary.
    const tok = 20 + ((s * 211 + 7) % (V - 40));
    const pos = kv.nextPosition;
    const t = performance.now();
    const o = await runner.run(inputs.decode([kv], [tok], [pos]));
    stepMs.push(performance.now() - t);
    kv.append(o.presentKeys, o.presentValues, 0, 1, [pos]);
    logits.set(o.logits.subarray(0, V), s * V);
  }
  const decodeMs = performance.now() - d0;
  const stats = runner.stats();
  await runner.release();
  kv.release();
  const logitsFile = join(String(values['out']), `logits-${config}-${process.pid}.bin`);
  writeFileSync(logitsFile, new Uint8Array(logits.buffer));
  const result: RunResult = {
    config,
    openMs,
    decodeStepMs: distribution(stepMs),
    decodeTokensPerSecond: 1000 / median(stepMs),
    decodeTokensPerSecondOverall: (steps * 1000) / decodeMs,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    stats,
    logitsFile,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function fidelity(ref: Float32Array, got: Float32Array, V: number): { kl: number; top1: number } {
  const steps = ref.length / V;
  let kl = 0;
  let agree = 0;
  const logSoftmax = (x: Float32Array, off: number): Float64Array => {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, x[off + i]!);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(x[off + i]! - max);
    const lse = max + Math.log(sum);
    return Float64Array.from({ length: V }, (_, i) => x[off + i]! - lse);
  };
  for (let s = 0; s < steps; s++) {
    const p = logSoftmax(ref, s * V);
    const q = logSoftmax(got, s * V);
    let k = 0;
    let ap = 0;
    let aq = 0;
    for (let i = 0; i < V; i++) {
      k += Math.exp(p[i]!) * (p[i]! - q[i]!);
      if (p[i]! > p[ap]!) ap = i;
      if (q[i]! > q[aq]!) aq = i;
    }
    kl += k;
    if (ap === aq) agree += 1;
  }
  return { kl: kl / steps, top1: agree / steps };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      steps: { type: 'string', default: '48' },
      threads: { type: 'string', default: '2' },
      ratio: { type: 'string', default: '4' },
      repeats: { type: 'string', default: '3' },
      preset: { type: 'string', default: '135m' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
      out: { type: 'string', default: 'bench-out/moe' },
      config: { type: 'string' },
      budget: { type: 'string' },
    },
  });
  const out = resolve(values.out);
  mkdirSync(out, { recursive: true });
  if (values.config !== undefined) return child(values);

  const preset = values.preset === 'small' ? 'small' : '135m';
  const modelDir = resolve(values.model ?? `.cache/bench-models/mixtral-${preset}`);
  if (!existsSync(join(modelDir, 'config.json'))) {
    process.stderr.write(`generating bench model mixtral/${preset} into ${modelDir}\n`);
    await createModel({ arch: 'mixtral', preset, seed: 0, out: modelDir });
  }
  const checkpoint = loadCheckpoint(modelDir);
  const compiled = compileModel(checkpoint, { cacheDir: values['cache-dir'], weightDtype: 'fp32', onProgress: (m) => process.stderr.write(`${m}\n`) });
  const expertBytes = readMoeManifest(compiled.dir)
    .experts.filter((e) => e.bits === 32)
    .reduce((s, e) => s + e.bytes, 0);
  const budget = Math.floor(expertBytes / Number(values.ratio));
  const here = fileURLToPath(import.meta.url);
  const runs: RunResult[] = [];
  for (let r = 0; r < Number(values.repeats); r++) {
    for (const config of CONFIGS) {
      const args = [
        here,
        '--model',
        modelDir,
        '--config',
        config,
        '--steps',
        values.steps,
        '--threads',
        values.threads,
        '--budget',
        String(budget),
        '--cache-dir',
        values['cache-dir'],
        '--out',
        out,
      ];
      const res = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      if (res.status !== 0) throw new Error(`moe-bench config ${config} failed (exit ${res.status}):\n${res.stderr}`);
      const line = res.stdout.trim().split('\n').pop() ?? '';
      runs.push(JSON.parse(line) as RunResult);
      process.stderr.write(`repeat ${r + 1} ${config}: ${runs.at(-1)?.decodeTokensPerSecond.toFixed(1)} tok/s\n`);
    }
  }
  const V = checkpoint.spec.vocabSize;
  const refLogits = (r: RunResult): Float32Array => {
    const b = readFileSync(r.logitsFile);
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  };
  const byConfig = (c: ConfigName): RunResult[] => runs.filter((r) => r.config === c);
  const a0 = byConfig('a')[0];
  if (!a0) throw new Error('no resident run');
  const summary = Object.fromEntries(
    CONFIGS.map((c) => {
      const rs = byConfig(c);
      const last = rs.at(-1);
      if (!last) throw new Error(`no runs for ${c}`);
      const fid = fidelity(refLogits(a0), refLogits(last), V);
      const med = (f: (r: RunResult) => number): number => median(rs.map(f));
      return [
        c,
        {
          description: DESCRIPTION[c],
          decodeTokensPerSecond: med((r) => r.decodeTokensPerSecond),
          decodeTokensPerSecondOverall: med((r) => r.decodeTokensPerSecondOverall),
          decodeStepP90Ms: med((r) => r.decodeStepMs.p90),
          peakRssMiB: med((r) => r.peakRssMiB),
          openMs: med((r) => r.openMs),
          hitRate: med((r) => r.stats['expertHitRate'] ?? 0),
          bytesLoadedPerStep: med((r) => (r.stats['expertBytesLoaded'] ?? 0) / (r.decodeStepMs.n + 1)),
          loadStallMsPerStep: med((r) => (r.stats['expertLoadStallMs'] ?? 0) / (r.decodeStepMs.n + 1)),
          materializeMsPerStep: med((r) => (r.stats['expertMaterializeMs'] ?? 0) / (r.decodeStepMs.n + 1)),
          predictionAccuracy: med((r) => r.stats['expertPredictionAccuracy'] ?? 0),
          prefetchHits: med((r) => r.stats['expertPrefetchHits'] ?? 0),
          residentExpertBytesPeak: med((r) => r.stats['expertResidentBytesPeak'] ?? 0),
          expertStoreBytes: last.stats['expertStoreBytes'] ?? 0,
          widths: {
            32: last.stats['expertsAt32Bits'] ?? 0,
            8: last.stats['expertsAt8Bits'] ?? 0,
            4: last.stats['expertsAt4Bits'] ?? 0,
            2: last.stats['expertsAt2Bits'] ?? 0,
          },
          klVsResident: fid.kl,
          top1VsResident: fid.top1,
          runs: rs.length,
        },
      ];
    }),
  );
  const tps = (c: ConfigName): number => (summary[c] as { decodeTokensPerSecond: number }).decodeTokensPerSecond;
  const result = {
    machine: machineInfo(),
    model: modelDir,
    spec: { layers: checkpoint.spec.numLayers, experts: checkpoint.spec.moe?.numExperts, topK: checkpoint.spec.moe?.topK, hidden: checkpoint.spec.hiddenSize },
    expertBytesFp32: expertBytes,
    budgetBytes: budget,
    steps: Number(values.steps),
    threads: Number(values.threads),
    repeats: Number(values.repeats),
    configs: summary,
    dOverB: tps('d') / tps('b'),
    dOverA: tps('d') / tps('a'),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`moe-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
