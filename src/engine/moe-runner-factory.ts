/**
 * Opens the MoE runner configured by an `edgemoe` policy: validates the params
 * (defaults filled), opens the compiled graphs, and either pins every expert to
 * one width or profiles expert importance on calibration text and assigns widths
 * under the byte target (policies/expert-offload/bitwidth.ts).
 */
import { Value } from '@sinclair/typebox/value';
import type { CompiledModel } from '../model/compile/compile-model.js';
import type { ExpertBits } from '../model/compile/moe-quantize.js';
import type { ModelSpec } from '../model/spec.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import { assignBitwidths, assignmentKey } from '../policies/expert-offload/bitwidth.js';
import { CALIBRATION_TEXT } from '../policies/expert-offload/calibration-text.js';
import { EdgeMoeSchema, resolveEdgeMoe, type EdgeMoeParams, type ExpertOffloadConfig } from '../policies/expert-offload/edgemoe.js';
import { profileExperts } from './moe-profile.js';
import { MoeRunner } from '../runtime/moe-runner.js';

/** Params as a policy file or --set gives them (unknown), checked against the edgemoe schema with defaults. */
export function parseEdgeMoeParams(raw: unknown): EdgeMoeParams {
  const withDefaults = Value.Default(EdgeMoeSchema, structuredClone(raw ?? {}));
  if (!Value.Check(EdgeMoeSchema, withDefaults)) {
    const first = [...Value.Errors(EdgeMoeSchema, withDefaults)][0];
    throw new Error(`edgemoe params${first ? `${first.path}: ${first.message}` : ''} (got ${JSON.stringify(raw)})`);
  }
  return withDefaults;
}

/** Calibration ids: the built-in text, tokenized, repeated or cut to `count`. */
export function calibrationIds(tokenizer: TextTokenizer, count: number): number[] {
  const base = tokenizer.encode(CALIBRATION_TEXT, { addSpecialTokens: false });
  if (base.length === 0) throw new Error('calibration text encodes to no tokens');
  return Array.from({ length: count }, (_, i) => base[i % base.length]!);
}

export interface OpenMoeOptions {
  readonly threads: number;
  readonly config: ExpertOffloadConfig;
  readonly tokenizer: TextTokenizer;
  /** Fill the cache layer by layer before serving (the all-resident configuration). Adaptive widths always warm the cache with the hottest experts. */
  readonly preload?: boolean;
}

export async function openMoeRunner(compiled: CompiledModel, spec: ModelSpec, options: OpenMoeOptions): Promise<MoeRunner> {
  const { config } = options;
  const runner = await MoeRunner.open(compiled.dir, spec, {
    threads: options.threads,
    budgetBytes: config.budgetBytes,
    cachePolicy: config.cachePolicy,
    prefetch: config.prefetch,
  });
  let widths: (layer: number, expert: number) => ExpertBits;
  let hottest: Array<{ layer: number; expert: number }> | null = null;
  const histogram = new Map<ExpertBits, number>();
  if (config.fixedBits !== null) {
    const bits = config.fixedBits;
    widths = () => bits;
  } else {
    const choices = [...new Set(config.bitsChoices)];
    const profile = await profileExperts(runner, spec, compiled.dir, calibrationIds(options.tokenizer, config.calibrationTokens), choices);
    const assignment = assignBitwidths({
      profile: profile.entries,
      choices,
      bytes: (l, e, b) => runner.store.fileBytes(l, e, b),
      targetBytes: config.adaptBytes,
    });
    widths = (l, e) => assignment.bits.get(assignmentKey(l, e)) ?? 32;
    // Warm start: the experts calibration routed to most, while they fit (EdgeMoE preloads hot experts).
    hottest = profile.entries.filter((p) => p.tokens > 0).sort((a, b) => b.tokens - a.tokens || a.layer - b.layer || a.expert - b.expert);
    runner.setStat('expertAdaptedBytes', assignment.totalBytes);
    // The predicted importance-weighted output error of the chosen widths: the offline accuracy cost.
    runner.setStat('expertAdaptedError', assignment.totalCost);
  }
  let total = 0;
  for (let l = 0; l < spec.numLayers; l++) {
    for (let e = 0; e < (spec.moe?.numExperts ?? 0); e++) {
      const b = widths(l, e);
      histogram.set(b, (histogram.get(b) ?? 0) + 1);
      total += runner.store.fileBytes(l, e, b);
    }
  }
  for (const b of [32, 8, 4, 2] as const) runner.setStat(`expertsAt${b}Bits`, histogram.get(b) ?? 0);
  runner.setStat('expertStoreBytes', total);
  runner.configure(widths, { budgetBytes: config.budgetBytes, cachePolicy: config.cachePolicy, prefetch: config.prefetch });
  if (options.preload === true) await runner.store.preload();
  else if (hottest !== null) await runner.store.preload(hottest);
  runner.resetStats();
  return runner;
}

/**
 * For the inference worker: an MoE model's runner from the `expertOffload`
 * params the engine passes (the edgemoe policy's params; absent: the defaults).
 */
export function openMoeRunnerForWorker(
  compiled: CompiledModel,
  spec: ModelSpec,
  tokenizer: TextTokenizer,
  threads: number,
  rawParams: unknown,
): Promise<MoeRunner> {
  return openMoeRunner(compiled, spec, { threads, tokenizer, config: resolveEdgeMoe(parseEdgeMoeParams(rawParams)) });
}
