/**
 * The policy contract. A policy is data (validated params) plus small pure
 * functions; its kind says where it hooks into a request. Policies never touch
 * onnxruntime or the scheduler: the engine hands them read-only views and acts
 * on what they return.
 */
export type Axis = 'C' | 'A' | 'P';

/** The two axes a policy serves, and the one it pays with (the CAP principle). */
export interface CapProfile {
  readonly favors: readonly [Axis, Axis];
  readonly costs: Axis;
}

export type PolicyKind = 'none' | 'kv-eviction' | 'sparse-attention' | 'kv-quantization' | 'context-compression' | 'expert-offload' | 'weight-elastic';

/** What the runtime must collect for a policy; collected only when some active policy asks. */
export interface StatsNeeds {
  /** Attention each cache entry has received, summed over all queries so far (H2O). */
  readonly accumulatedAttention: boolean;
  /** Attention rows of the last `observationWindow` prompt queries at the end of prefill (SnapKV, PyramidKV). 0: none. */
  readonly observationWindow: number;
  /** Attention of the newest query (TOVA). */
  readonly lastQueryAttention: boolean;
}

export const NO_STATS: StatsNeeds = Object.freeze({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false });

/**
 * One layer of one sequence's KV cache as an eviction method sees it. Layouts
 * are row-major; "entry" is a cached token slot. Per-head arrays are indexed
 * [kvHead][entry].
 */
export interface LayerKvView {
  readonly layer: number;
  readonly numLayers: number;
  readonly numKvHeads: number;
  /** Query heads per KV head (GQA group size). */
  readonly groupSize: number;
  readonly headDim: number;
  /** Entries currently cached in this layer (the same for every head). */
  readonly length: number;
  /** Original token position of each entry, per head: [numKvHeads * length]. */
  readonly positions: Int32Array;
  /** Post-RoPE keys [length, numKvHeads, headDim] (the cache layout). */
  readonly keys: Float32Array;
  /** Values [length, numKvHeads, headDim]. */
  readonly values: Float32Array;
  /** [numKvHeads * length], summed over the group's query heads; null unless asked for. */
  readonly accumulatedAttention: Float32Array | null;
  /** [numKvHeads, groupSize, window, length]; null unless asked for or after prefill. */
  readonly windowAttention: Float32Array | null;
  readonly window: number;
  /** [numKvHeads, groupSize, length]; null unless asked for. */
  readonly lastQueryAttention: Float32Array | null;
}

/** Which entries to keep, per KV head: numKvHeads arrays of ascending entry indices, all of the same length. */
export type KeepPlan = readonly Int32Array[];

/** What a policy did for one request, reported in the response and in metrics. */
/** What the prefix cache did for one request (absent from reports when the engine runs without one). */
export interface PrefixCacheUse {
  /** hit: the KV of the first `cachedTokens` prompt tokens came from the cache; miss: none did; bypassed: the policy cannot share a prefix. */
  readonly status: 'hit' | 'miss' | 'bypassed';
  readonly cachedTokens: number;
  /** Why the policy bypassed the cache; null otherwise. */
  readonly reason: string | null;
}

export interface PolicyReport {
  readonly policy: string;
  readonly kind: PolicyKind;
  readonly promptTokens: number;
  /** KV entries per layer and head at the end (for eviction: at most the budget). */
  readonly kvTokensRetained: number;
  /** Largest number of tokens the request's context covered (prompt + generated). */
  readonly contextTokens: number;
  /** kvTokensRetained / contextTokens for eviction, kept / original for compression. */
  readonly compressionRatio: number;
  /** Online accuracy proxy: mean attention mass kept by the last eviction (1 when nothing was evicted). */
  readonly attentionMassRetained: number | null;
  readonly details: Readonly<Record<string, number | string>>;
  /** Prefix cache use, when the engine has a prefix cache. */
  readonly prefixCache?: PrefixCacheUse;
}
