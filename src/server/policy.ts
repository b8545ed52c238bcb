import type { IncomingHttpHeaders } from 'node:http';
import { POLICY_HEADER } from '../cap/router.js';
import type { DroppedSpan } from '../policies/compression/types.js';
import type { PolicyReport } from '../policies/types.js';
import type { WeightPlanReport } from '../engine/types.js';
import type { DroppedText, GenerationPlan } from './generation-plan.js';
import type { ConstraintCap } from './structured-output.js';

export { POLICY_HEADER };

/** The Bearer key a request carried (auth has already checked it when keys are configured). */
export function bearerKey(headers: IncomingHttpHeaders): string | null {
  const match = headers.authorization === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization);
  return match?.[1] ?? null;
}

/** The `cap.overflow` report: what overflow handling did (snake_case; the mode's details flattened in). */
export interface OverflowCap {
  readonly mode: string;
  /** False when the request fit and nothing was done. */
  readonly applied: boolean;
  readonly tokens_before: number;
  /** Mode compress: what the engine's compression reached (null when it did not report, e.g. aborted). */
  readonly tokens_after: number | null;
  readonly dropped: number | null;
  readonly context_window: number;
  readonly max_tokens: number;
  readonly [detail: string]: string | number | boolean | null;
}

/** The elastic-weights plan the engine runs (snake_case), in `cap.weights` and GET /v1/policies. */
export interface WeightsCap {
  readonly budget_bytes: number;
  readonly resident_bytes: number;
  readonly preload_bytes: number;
  readonly streamed_bytes_per_pass: number;
  readonly total_bytes: number;
  readonly always_resident_bytes: number;
  readonly shards: number;
  readonly bits_histogram: Readonly<Record<string, number>>;
  readonly bits_per_shard: readonly string[];
  readonly target_ms_per_token: number;
  readonly predicted_ms_per_token: number | null;
  readonly meets_target: boolean;
  readonly profiled: boolean;
  readonly profile_cost: number;
}

export function weightsCap(r: WeightPlanReport | undefined): WeightsCap | null {
  if (r === undefined) return null;
  return {
    budget_bytes: r.budgetBytes,
    resident_bytes: r.residentBytes,
    preload_bytes: r.preloadBytes,
    streamed_bytes_per_pass: r.streamedBytesPerPass,
    total_bytes: r.totalBytes,
    always_resident_bytes: r.alwaysResidentBytes,
    shards: r.shards,
    bits_histogram: r.bitsHistogram,
    bits_per_shard: r.bitsPerShard,
    target_ms_per_token: r.targetMsPerToken,
    predicted_ms_per_token: r.predictedMsPerToken,
    meets_target: r.meetsTarget,
    profiled: r.profiled,
    profile_cost: r.profileCost,
  };
}

/** The `cap.prefix_cache` report: prompt KV reused from the prefix cache, or why the policy bypassed it. */
export interface PrefixCacheCap {
  readonly status: 'hit' | 'bypassed';
  readonly cached_tokens: number;
  readonly reason: string | null;
}

/** The `cap` object of responses: which policy served and what it did (snake_case, like the rest of the API). */
export interface CapObject {
  readonly policy: string;
  readonly kind: string;
  readonly prompt_tokens: number;
  readonly kv_tokens_retained: number | null;
  readonly context_tokens: number | null;
  readonly compression_ratio: number | null;
  readonly attention_mass_retained: number | null;
  /** Context compression: prompt tokens before and after, and the time it took (null for other kinds). */
  readonly original_tokens: number | null;
  readonly compressed_tokens: number | null;
  readonly compress_ms: number | null;
  readonly overflow: OverflowCap;
  /** Only when the request set `cap.return_dropped`: what truncation, shift or compression dropped, in prompt order. */
  readonly dropped?: readonly DroppedText[];
  /** Only for structured outputs and forced tool calls: the grammar and what enforcing it cost. */
  readonly constraint?: ConstraintCap;
  /** Only when the engine runs elastic weights (STI): the plan every request's weights come from. */
  readonly weights?: WeightsCap;
  /** Only when the prefix cache served part of the prompt (hit) or the policy could not use it (bypassed); a miss adds nothing. */
  readonly prefix_cache?: PrefixCacheCap;
  /** Only for a kv-quantization policy (KIVI): its bits, groups and residual, the entries it quantized, its packed bytes per token (computed). */
  readonly kv_quantization?: Readonly<Record<string, string | number>>;
}

/** What the cap object needs from the plan. */
export type CapPlan = Pick<GenerationPlan, 'policy' | 'promptTokens' | 'overflow' | 'overflowCompresses' | 'returnDropped' | 'overflowDropped'> & {
  readonly weights?: WeightsCap | null;
};

function mean(values: readonly number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

function detailNumber(report: PolicyReport | undefined, key: string): number | null {
  const v = report?.details[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

const snake = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function overflowCap(plan: CapPlan, compression: PolicyReport | undefined): OverflowCap {
  const o = plan.overflow;
  const after = plan.overflowCompresses ? detailNumber(compression, 'compressedTokens') : o.tokensAfter;
  const detail: Record<string, string | number> = {};
  for (const [key, value] of Object.entries(o.detail)) detail[snake(key)] = value;
  return {
    ...detail,
    mode: o.mode,
    applied: o.applied,
    tokens_before: o.tokensBefore,
    tokens_after: after,
    dropped: after === null ? null : o.tokensBefore - after,
    context_window: o.contextWindow,
    max_tokens: o.maxTokens,
  };
}

/**
 * One choice's report, or for n > 1 the mean over the choices that reported.
 * Choices cut off before the engine reported (aborted) leave the numbers
 * null, and prompt_tokens falls back to the request's. `dropped`: what the
 * engine's compression dropped (the first choice's; every choice compresses
 * the same prompt).
 */
export function capObject(
  plan: CapPlan,
  reports: readonly (PolicyReport | null)[],
  dropped: readonly DroppedSpan[] | null = null,
  constraint: ConstraintCap | null = null,
): CapObject {
  const got = reports.filter((r): r is PolicyReport => r !== null);
  const masses = got.map((r) => r.attentionMassRetained).filter((m): m is number => m !== null);
  const compression = got.find((r) => r.kind === 'context-compression');
  const { policy } = plan;
  const prefix = got.find((r) => r.prefixCache !== undefined && r.prefixCache.status !== 'miss')?.prefixCache;
  const quantization = got.find((r) => r.kind === 'kv-quantization');
  return {
    policy: policy.name,
    kind: policy.kind,
    prompt_tokens: got[0]?.promptTokens ?? plan.promptTokens.length,
    kv_tokens_retained: mean(got.map((r) => r.kvTokensRetained)),
    context_tokens: mean(got.map((r) => r.contextTokens)),
    compression_ratio: mean(got.map((r) => r.compressionRatio)),
    attention_mass_retained: mean(masses),
    original_tokens: detailNumber(compression, 'originalTokens'),
    compressed_tokens: detailNumber(compression, 'compressedTokens'),
    compress_ms: detailNumber(compression, 'compressMs'),
    overflow: overflowCap(plan, compression),
    ...(plan.returnDropped ? { dropped: [...plan.overflowDropped, ...(dropped ?? []).map((d) => ({ text: d.text, tokens: d.tokens }))] } : {}),
    ...(constraint !== null ? { constraint } : {}),
    ...(plan.weights != null ? { weights: plan.weights } : {}),
    ...(prefix !== undefined && prefix.status !== 'miss'
      ? { prefix_cache: { status: prefix.status, cached_tokens: prefix.cachedTokens, reason: prefix.reason } }
      : {}),
    ...(quantization !== undefined ? { kv_quantization: Object.fromEntries(Object.entries(quantization.details).map(([k, v]) => [snake(k), v])) } : {}),
  };
}
