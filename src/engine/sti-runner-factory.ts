/**
 * Opens the STI runner configured by a `weight-elastic` policy: compiles (or
 * finds) the model's shards, reads the importance profile saved with the model
 * (or profiles on the built-in calibration text and saves it), measures the
 * machine when a latency target needs it, plans (policies/weight-elastic/planner.ts)
 * and applies the plan; returns the runner and the plan as the API reports it.
 */
import { Value } from '@sinclair/typebox/value';
import type { CompileSource } from '../model/compile/compile-model.js';
import { compileSti } from '../model/compile/sti-compile.js';
import type { ExpertBits } from '../model/compile/moe-quantize.js';
import type { ModelSpec } from '../model/spec.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import { planShards, type Hardware, type Plan } from '../policies/weight-elastic/planner.js';
import { resolveSti, StiSchema, type StiParams, type WeightElasticConfig } from '../policies/weight-elastic/sti.js';
import { StiRunner } from '../runtime/sti-runner.js';
import { calibrationIds } from './moe-runner-factory.js';
import { allLogitsInputs, profileShards, readStiProfile, type StiProfile } from './sti-profile.js';
import type { WeightPlanReport } from './types.js';

export function parseStiParams(raw: unknown): StiParams {
  const withDefaults = Value.Default(StiSchema, structuredClone(raw ?? {}));
  if (!Value.Check(StiSchema, withDefaults)) {
    const first = [...Value.Errors(StiSchema, withDefaults)][0];
    throw new Error(`sti params${first ? `${first.path}: ${first.message}` : ''} (got ${JSON.stringify(raw)})`);
  }
  return withDefaults;
}

/** Assumed when no latency target asks for a measurement: only the residency order depends on it. */
const NOMINAL_HARDWARE: Hardware = Object.freeze({ computeMsPerLayer: 1, readBytesPerMs: 1_000_000 });

/** Read speed over one middle layer's fp32 shards (files open, as while serving), and compute per layer over a one-token pass. */
async function measureHardware(runner: StiRunner, spec: ModelSpec): Promise<Hardware> {
  const layer = Math.floor(spec.numLayers / 2);
  // Files stay open once read (the store keeps handles): time the second read, as decode sees it.
  for (const id of runner.shardsOf(layer)) await runner.store.read(id, 32);
  const t0 = performance.now();
  let bytes = 0;
  for (const id of runner.shardsOf(layer)) bytes += (await runner.store.read(id, 32)).byteLength;
  const readMs = Math.max(1e-3, performance.now() - t0);
  await runner.configure(
    { bits: runner.plan.bits.map(() => 32), resident: runner.plan.bits.map(() => false), preload: runner.plan.bits.map(() => false) },
    { prefetch: false },
  );
  // The first pass pays onnxruntime's one-time setup; the second is what decode costs.
  await runner.run(allLogitsInputs(spec, [1]));
  runner.resetStats();
  await runner.run(allLogitsInputs(spec, [1]));
  const s = runner.stats();
  const computeMs = (s['stiComputeMs'] ?? 0) + (s['stiAssembleMs'] ?? 0);
  return { computeMsPerLayer: Math.max(1e-3, computeMs / spec.numLayers), readBytesPerMs: bytes / readMs };
}

export interface OpenStiOptions {
  readonly cacheDir: string;
  readonly threads: number;
  readonly config: WeightElasticConfig;
  readonly tokenizer: TextTokenizer;
  /** Overrides the saved or built-in profile (tests, benches). */
  readonly profile?: StiProfile;
  readonly onProgress?: (m: string) => void;
}

export function planReport(runner: StiRunner, plan: Plan, config: WeightElasticConfig, profiled: boolean, hw: Hardware | null): WeightPlanReport {
  const histogram: Record<string, number> = { '32': 0, '8': 0, '4': 0, '2': 0 };
  for (const b of plan.bits) histogram[String(b)] = (histogram[String(b)] ?? 0) + 1;
  const perLayer: string[] = [];
  for (const s of runner.manifest.shards) {
    const tag = `${s.kind === 'attn' ? 'a' : 'm'}${s.index}:${plan.bits[s.id]}${plan.resident[s.id] ? 'r' : plan.preload[s.id] ? 'p' : 's'}`;
    perLayer[s.layer] = perLayer[s.layer] === undefined ? tag : `${perLayer[s.layer]} ${tag}`;
  }
  return {
    budgetBytes: config.budgetBytes,
    residentBytes: plan.residentBytes,
    preloadBytes: plan.preloadBytes,
    streamedBytesPerPass: plan.streamedBytes,
    totalBytes: plan.totalBytes,
    alwaysResidentBytes: runner.manifest.residentWeightBytes,
    shards: plan.bits.length,
    bitsHistogram: histogram,
    bitsPerShard: perLayer,
    targetMsPerToken: config.targetMsPerToken,
    predictedMsPerToken: hw === null ? null : plan.predictedMsPerToken,
    meetsTarget: plan.meetsTarget,
    profiled,
    profileCost: plan.cost,
  };
}

export async function openStiRunner(source: CompileSource, options: OpenStiOptions): Promise<{ runner: StiRunner; plan: Plan; report: WeightPlanReport }> {
  const spec = source.spec;
  const { config } = options;
  const compiled = compileSti(source, { cacheDir: options.cacheDir, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
  const runner = await StiRunner.open(compiled.dir, spec, { threads: options.threads });
  const choices = [...new Set(config.bitsChoices)] as ExpertBits[];
  let profile: StiProfile | null = options.profile ?? null;
  if (config.fixedBits === null && profile === null) {
    profile = readStiProfile(compiled.dir, compiled.manifest.key);
    if (profile === null) {
      options.onProgress?.(
        `profiling shard importance on ${config.calibrationTokens} built-in calibration tokens (capserve model profile saves one ahead of time)`,
      );
      profile = await profileShards(
        runner,
        spec,
        compiled.dir,
        calibrationIds(options.tokenizer, config.calibrationTokens),
        [32, 8, 4, 2],
        'built-in',
        options.onProgress,
      );
    }
  }
  const costs = new Map(profile?.entries.map((e) => [e.id, e.cost]) ?? []);
  const hw = config.targetMsPerToken > 0 ? await measureHardware(runner, spec) : null;
  const plan = planShards({
    numLayers: spec.numLayers,
    shards: compiled.manifest.shards.map((s) => ({
      id: s.id,
      layer: s.layer,
      bytes: (b: ExpertBits) => runner.fileBytes(s.id, b),
      cost: costs.get(s.id) ?? null,
    })),
    choices,
    fixedBits: config.fixedBits,
    budgetBytes: config.budgetBytes,
    preloadBytes: config.preloadBytes,
    targetMsPerToken: config.targetMsPerToken,
    hardware: hw ?? NOMINAL_HARDWARE,
  });
  await runner.configure(plan, { prefetch: config.prefetch });
  const report = planReport(runner, plan, config, profile !== null, hw);
  if (hw !== null)
    options.onProgress?.(
      `STI plan: measured ${hw.computeMsPerLayer.toFixed(2)} ms compute per layer, ${(hw.readBytesPerMs / 1000).toFixed(0)} MB/s reads; predicted ${plan.predictedMsPerToken.toFixed(1)} ms per pass (target ${config.targetMsPerToken})${plan.meetsTarget ? '' : ', target not reachable with these widths'}`,
    );
  runner.setStat('stiBudgetBytes', config.budgetBytes);
  runner.setStat('stiPlanResidentBytes', plan.residentBytes);
  runner.setStat('stiPreloadBytes', plan.preloadBytes);
  runner.setStat('stiStreamedBytesPerPass', plan.streamedBytes);
  runner.setStat('stiTotalBytes', plan.totalBytes);
  for (const b of [32, 8, 4, 2]) runner.setStat(`stiShardsAt${b}Bits`, report.bitsHistogram[String(b)] ?? 0);
  runner.resetStats();
  return { runner, plan, report };
}

/** For the inference worker: the runner from the weight-elastic policy's params. */
export function openStiRunnerForWorker(
  source: CompileSource,
  tokenizer: TextTokenizer,
  cacheDir: string,
  threads: number,
  rawParams: unknown,
  onProgress: (m: string) => void,
): Promise<{ runner: StiRunner; report: WeightPlanReport }> {
  return openStiRunner(source, { cacheDir, threads, tokenizer, config: resolveSti(parseStiParams(rawParams)), onProgress });
}

/**
 * `capserve model profile`: compiles the shards if needed, profiles every shard at
 * 8/4/2 bits on `ids` and saves the profile with them.
 */
export async function profileModel(
  source: CompileSource,
  ids: readonly number[],
  sourceName: string,
  cacheDir: string,
  onProgress: (m: string) => void,
): Promise<StiProfile & { dir: string }> {
  const compiled = compileSti(source, { cacheDir, onProgress });
  const runner = await StiRunner.open(compiled.dir, source.spec, { threads: 1 });
  try {
    onProgress(`profiling ${compiled.manifest.shards.length} shards at 8/4/2 bits on ${ids.length} tokens of ${sourceName}`);
    return { ...(await profileShards(runner, source.spec, compiled.dir, ids, [32, 8, 4, 2], sourceName, onProgress)), dir: compiled.dir };
  } finally {
    await runner.release();
  }
}
