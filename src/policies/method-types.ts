import type { Static, TObject } from '@sinclair/typebox';
import type { ModelSpec } from '../model/spec.js';
import type { SegmentRole } from './compression/types.js';
import type { PolicyRuntime } from './runtime.js';
import type { CapProfile, LayerKvView, PolicyKind, StatsNeeds } from './types.js';

/** Validated params as the registry stores them (defaults filled, frozen). */
export type PolicyParams = Readonly<Record<string, unknown>>;

/** What the runtime must produce for a policy: the contract's statistics plus the current step's query (Quest). */
export interface RuntimeNeeds extends StatsNeeds {
  /** The current decode step's post-RoPE query [numHeads * headDim], per layer. */
  readonly query: boolean;
}

/** A cross-field problem in params; `path` is a JSON pointer relative to params ('/topPages'). */
export interface ParamIssue {
  readonly path: string;
  readonly message: string;
}

/** What the selector always keeps: the first `sinkTokens` entries and the newest `recentTokens`. */
export interface Protect {
  readonly sinkTokens: number;
  readonly recentTokens: number;
}

/**
 * Positions after eviction: 'original' keeps each entry's token position (keys
 * stay rotated as they were, the next query continues at the true position, as
 * kvpress does); 'rolling' renumbers the kept entries 0..k-1 and the next query
 * sits at k, as StreamingLLM assigns positions within the cache.
 */
export type PositionMode = 'original' | 'rolling';

interface MethodCommon {
  readonly method: string;
  readonly kind: PolicyKind;
  /** One line: the rule and its params. */
  readonly rule: string;
  readonly cap: CapProfile;
  /** Closed TypeBox object with documented defaults and ranges. */
  readonly schema: TObject;
  needs(params: PolicyParams): RuntimeNeeds;
  /** Checks the schema cannot express; empty when fine. */
  check(params: PolicyParams): readonly ParamIssue[];
  /** One sequence's runtime object (policies/runtime.ts): what the engine calls, per phase and per pass. */
  instantiate(params: PolicyParams, spec: ModelSpec): PolicyRuntime;
  /** What the HTTP side must send for this method (it asks the method, not the params). */
  request(params: PolicyParams): RequestNeeds;
}

/**
 * What a method needs from the HTTP side before the engine sees the request:
 * role-tagged prompt segments, whether the prompt may exceed the window, and,
 * for a method that shrinks the prompt, what it can reach.
 */
export interface RequestNeeds {
  /** Role-tagged segments of the prompt (compression cuts along them). */
  readonly segments: boolean;
  /** The prompt may be longer than the window: the method bounds the cache or shrinks the prompt first. */
  readonly promptMayExceedWindow: boolean;
  /** A method that shrinks the prompt: what it keeps and what it aims at; null otherwise. */
  readonly shrink: PromptShrink | null;
}

export interface PromptShrink {
  /** Whether segments of this role are left whole. */
  keeps(role: SegmentRole): boolean;
  /** The whole prompt's token target of the method's own rate, for a prompt of `total` tokens of which `compressible` may go. */
  ownTarget(total: number, compressible: number): number;
}

/** A method the HTTP side passes through unchanged. */
export const PLAIN_REQUEST: RequestNeeds = Object.freeze({ segments: false, promptMayExceedWindow: false, shrink: null });

export interface EvictionMethod extends MethodCommon {
  readonly kind: 'kv-eviction';
  readonly positions: PositionMode;
  /** [numKvHeads * length], higher = keep. */
  score(view: LayerKvView, params: PolicyParams): Float32Array;
  /** What the selector always keeps when this layer keeps `keep` entries. */
  protect(params: PolicyParams, keep: number): Protect;
  /** Entries this layer may keep (before capping at its length) when the request has covered `contextTokens`. */
  layerKeep(params: PolicyParams, view: LayerKvView, contextTokens: number): number;
}

export interface SparseAttentionMethod extends MethodCommon {
  readonly kind: 'sparse-attention';
}

/** Quantizes cached keys and values in place (KIVI); the graph and the cache layout are unchanged. */
export interface KvQuantizationMethod extends MethodCommon {
  readonly kind: 'kv-quantization';
}

export interface NoneMethod extends MethodCommon {
  readonly kind: 'none';
}

export interface ExpertOffloadMethod extends MethodCommon {
  readonly kind: 'expert-offload';
}

export interface WeightElasticMethod extends MethodCommon {
  readonly kind: 'weight-elastic';
}

/** Context compression methods carry their compress() in compression/types.ts (CompressionMethod). */
export interface ContextCompressionMethod extends MethodCommon {
  readonly kind: 'context-compression';
}

export type MethodDefinition =
  EvictionMethod | SparseAttentionMethod | KvQuantizationMethod | NoneMethod | ExpertOffloadMethod | ContextCompressionMethod | WeightElasticMethod;

/**
 * Params reach a method only after strict validation against its own schema,
 * so this is the one place the erased record is read back as the schema's type.
 */
export function typedParams<S extends TObject>(_schema: S, params: PolicyParams): Static<S> {
  return params;
}
