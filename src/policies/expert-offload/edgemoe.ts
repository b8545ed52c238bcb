/**
 * EdgeMoE (Yi et al., 2023) as a policy of kind `expert-offload`: non-expert
 * weights stay resident, experts live in per-expert files and are loaded when the
 * router picks them, into a cache bounded in bytes; each expert is stored at the
 * bitwidth its measured importance earns under the byte budget (bitwidth.ts); the
 * next layer's experts are predicted by applying its router to this layer's hidden
 * state and read from disk while this layer computes.
 *
 * The runtime (src/runtime/moe-runner.ts) executes it; this file is the data:
 * params with defaults, the one-line rule, the CAP profile, and the param checks.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { ExpertBits } from '../../model/compile/moe-quantize.js';
import { PLAIN_REQUEST, typedParams, type ParamIssue, type PolicyParams, type RuntimeNeeds } from '../method-types.js';
import { PlainRuntime } from '../runtime.js';
import type { CapProfile } from '../types.js';
import type { CachePolicy } from '../../kv/expert-cache.js';

const BitsLiteral = Type.Union([Type.Literal(32), Type.Literal(8), Type.Literal(4), Type.Literal(2)]);

export const EdgeMoeSchema = Type.Object(
  {
    budgetBytes: Type.Integer({
      minimum: 0,
      default: 256 * 1024 * 1024,
      description:
        'Expert cache budget in bytes (cached plus prefetched experts). Any value serves correctly; 0 streams every expert from disk. Experts larger than the budget are loaded for one call and dropped.',
    }),
    bits: Type.Union([Type.Literal('adaptive'), BitsLiteral], {
      default: 'adaptive',
      description: "'adaptive': per-expert widths from calibration importance under adaptBytes; 32/8/4/2 pins every expert to that width (32 = exact).",
    }),
    bitsChoices: Type.Array(BitsLiteral, {
      minItems: 1,
      uniqueItems: true,
      default: [4, 8, 32],
      description: 'Widths the adaptation may choose from (2 is allowed: onnxruntime MatMulNBits supports 2-bit codes).',
    }),
    adaptBytes: Type.Integer({
      minimum: 0,
      default: 0,
      description: 'Byte target for all experts at their adapted widths; 0 means budgetBytes (aim for the whole expert set to fit the cache).',
    }),
    cachePolicy: Type.Union([Type.Literal('lru'), Type.Literal('frequency')], {
      default: 'frequency',
      description: "Eviction order: 'lru' or 'frequency' (lowest decayed use count first, ties least recently used).",
    }),
    prefetch: Type.Boolean({
      default: true,
      description: "Predict layer l+1's experts with its router on layer l's hidden state and read them while layer l computes.",
    }),
    calibrationTokens: Type.Integer({
      minimum: 16,
      maximum: 4096,
      default: 256,
      description: 'Calibration tokens for the importance profile (bits: adaptive only).',
    }),
  },
  { additionalProperties: false },
);

export type EdgeMoeParams = Static<typeof EdgeMoeSchema>;

export const EDGEMOE_RULE =
  'experts on disk, loaded on demand into a byte-bounded cache (LRU or frequency-aware), each at the bitwidth its calibration importance earns; next layer predicted from this layer and prefetched';

/** Serves models larger than memory and keeps decode fast through prediction and low bitwidths (C, P); pays in accuracy when experts are quantized. */
export const EDGEMOE_CAP: CapProfile = Object.freeze({ favors: Object.freeze(['C', 'P'] as const), costs: 'A' as const });

export const EDGEMOE_DEFAULTS: EdgeMoeParams = Object.freeze({
  budgetBytes: 256 * 1024 * 1024,
  bits: 'adaptive',
  bitsChoices: [4, 8, 32],
  adaptBytes: 0,
  cachePolicy: 'frequency',
  prefetch: true,
  calibrationTokens: 256,
} satisfies EdgeMoeParams);

export function checkEdgeMoe(params: EdgeMoeParams): ParamIssue[] {
  const issues: ParamIssue[] = [];
  if (params.bits === 'adaptive' && params.bitsChoices.length < 2 && params.bitsChoices[0] !== 32) {
    // One non-fp32 choice is legal but adapts nothing; say so rather than surprise.
    issues.push({
      path: '/bitsChoices',
      message: `adaptive bitwidths with a single choice (${params.bitsChoices[0]}) is the same as bits: ${params.bitsChoices[0]}; list at least two widths`,
    });
  }
  return issues;
}

/**
 * The registry entry: MethodCommon's fields with kind 'expert-offload' (the
 * registry's MethodDefinition union needs an ExpertOffloadMethod member for it).
 */
export const EDGEMOE_METHOD = Object.freeze({
  method: 'edgemoe',
  kind: 'expert-offload' as const,
  rule: EDGEMOE_RULE,
  cap: EDGEMOE_CAP,
  schema: EdgeMoeSchema,
  needs: (_params: PolicyParams): RuntimeNeeds => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: false }),
  check: (params: PolicyParams): readonly ParamIssue[] => checkEdgeMoe(typedParams(EdgeMoeSchema, params)),
  // The expert store is the model runner's, shared by every sequence: a sequence runs on the plain graph.
  instantiate: () => new PlainRuntime('expert-offload'),
  request: () => PLAIN_REQUEST,
});

/** What the runtime needs, resolved: the byte target filled in, the fixed width or null for adaptive. */
export interface ExpertOffloadConfig {
  readonly budgetBytes: number;
  readonly fixedBits: ExpertBits | null;
  readonly bitsChoices: readonly ExpertBits[];
  readonly adaptBytes: number;
  readonly cachePolicy: CachePolicy;
  readonly prefetch: boolean;
  readonly calibrationTokens: number;
}

export function resolveEdgeMoe(params: EdgeMoeParams): ExpertOffloadConfig {
  return Object.freeze({
    budgetBytes: params.budgetBytes,
    fixedBits: params.bits === 'adaptive' ? null : params.bits,
    bitsChoices: Object.freeze([...params.bitsChoices]),
    adaptBytes: params.adaptBytes === 0 ? params.budgetBytes : params.adaptBytes,
    cachePolicy: params.cachePolicy,
    prefetch: params.prefetch,
    calibrationTokens: params.calibrationTokens,
  });
}
