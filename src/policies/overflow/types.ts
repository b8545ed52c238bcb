/**
 * Overflow handling: what happens when prompt + max_tokens exceed the model's
 * context window. Every mode is a pure function of the prompt's segments and
 * the two numbers, and reports what it did for the response.
 */
import type { CompressionResult, PromptSegment } from '../compression/types.js';

export type OverflowMode = 'error' | 'truncate' | 'shift' | 'compress' | 'evict';

export const OVERFLOW_MODES: readonly OverflowMode[] = ['error', 'truncate', 'shift', 'compress', 'evict'];

/** A configured (or requested) overflow behaviour, defaults filled (see normalizeOverflow). */
export type OverflowSpec =
  | { readonly mode: 'error' }
  | { readonly mode: 'truncate'; readonly side: 'left' | 'middle' }
  | { readonly mode: 'shift'; readonly keep: number | 'system' }
  | { readonly mode: 'compress'; readonly policy: string }
  | { readonly mode: 'evict'; readonly policy: string };

export interface OverflowInput {
  /** The prompt as segments (roles as for compression); their concatenation is the prompt. */
  readonly segments: readonly PromptSegment[];
  /** Tokens the request may generate (max_tokens after defaults). */
  readonly maxTokens: number;
  /** The model's context window in tokens. */
  readonly contextWindow: number;
}

/** What happened, for the response's `cap` report and the metrics. */
export interface OverflowReport {
  readonly mode: OverflowMode;
  /** False when the prompt already fit and nothing was done. */
  readonly applied: boolean;
  readonly tokensBefore: number;
  readonly tokensAfter: number;
  readonly dropped: number;
  readonly contextWindow: number;
  readonly maxTokens: number;
  /** Mode-specific: truncate {side}, shift {keep, block, blocks}, compress {policy, method, ratio}, evict {policy, kvTokenLimit}. */
  readonly detail: Readonly<Record<string, number | string>>;
}

export interface OverflowResult {
  readonly segments: readonly PromptSegment[];
  readonly tokens: readonly number[];
  readonly report: OverflowReport;
  /** compress only: the method's result (dropped spans for the opt-in debug field). */
  readonly compression: CompressionResult | null;
  /** evict only: the KV-eviction policy the request must be served with. */
  readonly evictPolicy: string | null;
}
