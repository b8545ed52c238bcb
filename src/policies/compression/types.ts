/**
 * What a context-compression method sees and returns. A prompt arrives as
 * ordered segments of token ids with a role each; their concatenation is the
 * prompt. A method keeps a subset of each compressible segment's tokens (in
 * order, except where a method documents reordering) and says what it dropped.
 */
import type { TObject } from '@sinclair/typebox';
import type { TextTokenizer } from '../../model/tokenizer-types.js';
import type { ModelSpec } from '../../model/spec.js';
import type { ParamIssue, PolicyParams, RequestNeeds, RuntimeNeeds } from '../method-types.js';
import type { PolicyRuntime } from '../runtime.js';
import type { CapProfile } from '../types.js';
import type { TokenScorer } from './scorer.js';

/**
 * - system: the system message content; kept unless `compressSystem`.
 * - question: the last user message; kept unless `compressQuestion`.
 * - context: documents, earlier turns, demonstrations: what compression is for.
 * - other: chat-template scaffolding (BOS, role markers, the opened assistant
 *   turn); never compressed, because dropping it breaks the prompt format.
 */
export type SegmentRole = 'system' | 'context' | 'question' | 'other';

export const SEGMENT_ROLES: readonly SegmentRole[] = ['system', 'context', 'question', 'other'];

export interface PromptSegment {
  readonly role: SegmentRole;
  readonly tokens: readonly number[];
}

export interface CompressionInput {
  readonly segments: readonly PromptSegment[];
}

/** A run of consecutive tokens of one input segment that the method dropped (indices into that segment). */
export interface DroppedSpan {
  readonly segment: number;
  readonly start: number;
  /** Exclusive. */
  readonly end: number;
  readonly tokens: readonly number[];
  readonly text: string;
}

export interface CompressionResult {
  readonly method: string;
  /** One per input segment, same order and roles; tokens are what is kept. */
  readonly segments: readonly PromptSegment[];
  /** The compressed prompt: the kept segments concatenated. */
  readonly tokens: readonly number[];
  readonly originalTokens: number;
  readonly compressedTokens: number;
  /** The whole prompt's token target the rate resolved to. */
  readonly targetTokens: number;
  /** Tokens the method could compress (roles it may touch). */
  readonly compressibleTokens: number;
  /** What was dropped, for the opt-in debug field; ordered by segment and position. */
  readonly dropped: readonly DroppedSpan[];
  /** Method-specific counts for the response and metrics (documents kept, scorer calls, ...). */
  readonly details: Readonly<Record<string, number | string>>;
}

/** Everything a method may use besides its params; one read-only object so signatures stay short. */
export interface CompressionContext {
  readonly scorer: TokenScorer;
  readonly tokenizer: TextTokenizer;
}

/**
 * A compression method as the registry lists it: the same fields as the other
 * kinds (method, kind, rule, cap, schema, needs, check, instantiate, request) plus `compress`.
 */
export interface CompressionMethod {
  readonly method: string;
  readonly kind: 'context-compression';
  readonly rule: string;
  readonly cap: CapProfile;
  readonly schema: TObject;
  needs(params: PolicyParams): RuntimeNeeds;
  check(params: PolicyParams): readonly ParamIssue[];
  compress(input: CompressionInput, scorer: TokenScorer, tokenizer: TextTokenizer, params: PolicyParams): Promise<CompressionResult>;
  instantiate(params: PolicyParams, spec: ModelSpec): PolicyRuntime;
  request(params: PolicyParams): RequestNeeds;
}

/**
 * Compression trades accuracy for context and speed: a prompt that would not
 * fit (C) fits, and prefill and KV shrink with it (P). The scorer's forward
 * passes are the price paid in P; the profile names the axis given up.
 */
export const COMPRESSION_CAP: CapProfile = Object.freeze({ favors: Object.freeze(['C', 'P'] as const), costs: 'A' as const });

export const NO_RUNTIME_NEEDS: RuntimeNeeds = Object.freeze({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: false });
