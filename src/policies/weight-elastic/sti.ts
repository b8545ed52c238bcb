/**
 * STI (Guo, Choe, Lin: "STI: Turbocharge NLP Inference at the Edge via Elastic
 * Pipelining", ASPLOS'23, arXiv 2207.05022) as a policy of kind `weight-elastic`:
 * a dense model's layers are cut into shards (attention by KV-head group, the MLP
 * by slices of the intermediate dimension; model/compile/sti-shards.ts), each
 * stored at 32/8/4/2 bits; the importance of each shard at each width is profiled
 * on calibration text (KL against full precision, engine/sti-profile.ts); a
 * planner (planner.ts) picks each shard's width and whether it stays resident,
 * sits in the preload buffer, or streams through the IO/compute pipeline, under a
 * resident-weight budget and a latency target, maximising profiled accuracy.
 *
 * The runtime (src/runtime/sti-runner.ts) executes it; this file is the data:
 * params with defaults, the one-line rule, the CAP profile, and the param checks.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { ExpertBits } from '../../model/compile/moe-quantize.js';
import { PLAIN_REQUEST, typedParams, type ParamIssue, type PolicyParams, type RuntimeNeeds } from '../method-types.js';
import { PlainRuntime } from '../runtime.js';
import type { CapProfile } from '../types.js';

const BitsLiteral = Type.Union([Type.Literal(32), Type.Literal(8), Type.Literal(4), Type.Literal(2)]);

export const StiSchema = Type.Object(
  {
    budgetBytes: Type.Integer({
      minimum: 0,
      default: 256 * 1024 * 1024,
      description:
        'Resident weight bytes for shards (at their chosen widths). Any value serves correctly; 0 streams every shard outside the preload buffer from disk on every forward pass.',
    }),
    targetMsPerToken: Type.Number({
      minimum: 0,
      default: 0,
      description:
        'Decode latency target (ms per forward pass) the plan must meet by narrowing widths (adaptive) given the measured compute and read speed; 0: no target (adaptive keeps every shard at its widest choice).',
    }),
    bits: Type.Union([Type.Literal('adaptive'), BitsLiteral], {
      default: 'adaptive',
      description:
        "'adaptive': per-shard widths from the importance profile under the plan's constraints; 32/8/4/2 pins every shard to that width (32 = the full model, exactly, at any budget).",
    }),
    bitsChoices: Type.Array(BitsLiteral, { minItems: 1, uniqueItems: true, default: [2, 4, 8, 32], description: 'Widths the planner may choose from.' }),
    preloadBytes: Type.Integer({
      minimum: 0,
      default: 0,
      description:
        "The preload buffer: the first layers' shards, held in memory so the first layers compute while later layers are read (STI's preload buffer).",
    }),
    prefetch: Type.Boolean({
      default: true,
      description: "Read layer l+1's streamed shards while layer l computes (off: read each layer's shards when it starts).",
    }),
    calibrationTokens: Type.Integer({
      minimum: 16,
      maximum: 4096,
      default: 128,
      description: 'Calibration tokens for the importance profile when none is saved with the model (bits: adaptive).',
    }),
  },
  { additionalProperties: false },
);

export type StiParams = Static<typeof StiSchema>;

export const STI_RULE =
  'dense weights as shards (KV-head groups, MLP slices) at 32/8/4/2 bits; widths and residency planned from profiled importance under a resident budget and a latency target; the rest streamed layer by layer behind compute, the first layers from a preload buffer';

/** Serves a dense model in less weight memory and starts it fast from cold (C, P); pays in accuracy when shards are quantized. */
export const STI_CAP: CapProfile = Object.freeze({ favors: Object.freeze(['C', 'P'] as const), costs: 'A' as const });

export function checkSti(params: StiParams): ParamIssue[] {
  const issues: ParamIssue[] = [];
  if (params.bits === 'adaptive' && params.bitsChoices.length < 2 && params.bitsChoices[0] !== 32) {
    issues.push({
      path: '/bitsChoices',
      message: `adaptive bitwidths with a single choice (${params.bitsChoices[0]}) is the same as bits: ${params.bitsChoices[0]}; list at least two widths`,
    });
  }
  return issues;
}

export const STI_METHOD = Object.freeze({
  method: 'sti',
  kind: 'weight-elastic' as const,
  rule: STI_RULE,
  cap: STI_CAP,
  schema: StiSchema,
  needs: (_params: PolicyParams): RuntimeNeeds => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: false }),
  check: (params: PolicyParams): readonly ParamIssue[] => checkSti(typedParams(StiSchema, params)),
  // The shard store and plan are the model runner's, shared by every sequence: a sequence runs on the plain graph.
  instantiate: () => new PlainRuntime('weight-elastic'),
  request: () => PLAIN_REQUEST,
});

/** What the runtime needs, resolved. */
export interface WeightElasticConfig {
  readonly budgetBytes: number;
  readonly targetMsPerToken: number;
  readonly fixedBits: ExpertBits | null;
  readonly bitsChoices: readonly ExpertBits[];
  readonly preloadBytes: number;
  readonly prefetch: boolean;
  readonly calibrationTokens: number;
}

export function resolveSti(params: StiParams): WeightElasticConfig {
  return Object.freeze({
    budgetBytes: params.budgetBytes,
    targetMsPerToken: params.targetMsPerToken,
    fixedBits: params.bits === 'adaptive' ? null : params.bits,
    bitsChoices: Object.freeze([...params.bitsChoices]),
    preloadBytes: params.preloadBytes,
    prefetch: params.prefetch,
    calibrationTokens: params.calibrationTokens,
  });
}
