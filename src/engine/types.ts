import type { Policy } from '../policies/policy.js';
import type { PolicyReport } from '../policies/types.js';
import type { DroppedSpan, PromptSegment } from '../policies/compression/types.js';
import type { Grammar } from './grammar/grammar.js';
import type { ConstraintReport } from './grammar/matcher.js';

/**
 * The contract between server/ and the engine. The server never sees tensors,
 * the engine never sees raw JSON.
 */
export interface SamplingParams {
  /** 0 means greedy. */
  readonly temperature: number;
  readonly topP: number;
  /** 0 or less disables top-k. */
  readonly topK: number;
  readonly minP: number;
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  /** 1 disables; >1 penalizes tokens seen in prompt or output (CTRL / HF semantics). */
  readonly repetitionPenalty: number;
  /** token id -> additive bias, clamped to [-100, 100] by the API layer. */
  readonly logitBias: ReadonlyMap<number, number>;
  /** Same seed, same output. null: seeded from a random source. */
  readonly seed: number | null;
  readonly maxTokens: number;
  readonly stop: readonly string[];
  /** Generation ends after any of these ids (eos ids from generation_config.json, plus user ids). */
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  /** Number of top alternatives to report per token; null: no logprobs at all. */
  readonly logprobs: number | null;
}

export const DEFAULT_SAMPLING: SamplingParams = Object.freeze({
  temperature: 1,
  topP: 1,
  topK: 0,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  logitBias: new Map<number, number>(),
  seed: null,
  maxTokens: 16,
  stop: [],
  stopTokenIds: [],
  ignoreEos: false,
  logprobs: null,
});

export interface GenerateRequest {
  readonly id: string;
  readonly promptTokens: readonly number[];
  readonly sampling: SamplingParams;
  /** Serving policy name chosen by cap/router; 'full' when none. */
  readonly policy: string;
  /** The policy's configuration (what the engine executes); absent or kind 'none': full attention. */
  readonly servingPolicy?: Policy;
  /**
   * Keep generated steps' log-softmax rows (for shadow fidelity), returned with
   * 'done': true for every step, a number for only the first N steps.
   */
  readonly captureLogprobs?: boolean | number;
  /**
   * Teacher forcing: feed these tokens as the generated ones instead of sampling
   * (evaluation of a policy's decode-time behaviour on a fixed continuation).
   */
  readonly forcedTokens?: readonly number[];
  /**
   * The prompt as role-tagged segments (their concatenation is promptTokens):
   * what a context-compression policy compresses. Absent: the whole prompt is one context segment.
   */
  readonly segments?: readonly PromptSegment[];
  /** Overrides the compression policy's rate (a ratio, or a whole-prompt token target), e.g. to fit the window. */
  readonly compressionRate?: number;
  /** Return what compression dropped in the 'done' event (debugging; opt-in). */
  readonly returnDropped?: boolean;
  /**
   * Constrained decoding: every generated token keeps the output a prefix of a
   * document of this grammar (engine/grammar/), EOS only where the document is
   * complete, and generation ends when nothing more can follow it.
   */
  readonly grammar?: Grammar;
}

/**
 * Teacher-forced scoring: logits for positions of a given token sequence, under
 * a policy, by chunked prefill (eviction between chunks where the policy says).
 */
export interface ScoreRequest {
  readonly id: string;
  readonly tokens: readonly number[];
  readonly policy: string;
  readonly servingPolicy?: Policy;
  /** First position whose next-token distribution is reported. */
  readonly from: number;
  /** 'target': log p(tokens[t+1] | tokens[..t]) only; 'rows': the whole log-softmax row. */
  readonly mode: 'target' | 'rows';
  /** Prefill chunk length for this request (eviction granularity); engine default when absent. */
  readonly chunk?: number;
  /**
   * 'resident': score with the all-experts-resident fp32 model (the reference an
   * expert-offload policy is measured against); ignored by dense models, whose
   * plain model is already the reference.
   */
  readonly reference?: 'resident';
}

export interface ScoreResult {
  /** [n] log-probabilities of the actual next tokens for positions from..tokens.length-2. */
  readonly targetLogprobs: Float32Array;
  /** [n, vocabSize] log-softmax rows (mode 'rows'), else null. */
  readonly rows: Float32Array | null;
  readonly vocabSize: number;
  readonly policy: PolicyReport;
}

export interface TokenLogprob {
  readonly tokenId: number;
  readonly logprob: number;
}

/** A top-logprobs alternative with its string, decoded in the sampled token's context (model/token-text.ts). */
export interface TopLogprob extends TokenLogprob {
  readonly text: string;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
}

export type TokenEvent =
  | {
      readonly type: 'token';
      readonly tokenId: number;
      /** Text made visible by this token (stop strings held back and cut). */
      readonly text: string;
      /** This token's own string in context (model/token-text.ts); '' when logprobs were not asked for. */
      readonly tokenText: string;
      readonly logprob: number | null;
      readonly topLogprobs: readonly TopLogprob[] | null;
    }
  | {
      readonly type: 'done';
      readonly finishReason: FinishReason;
      /** Trailing text released at the end (held-back partial stop match that did not complete). */
      readonly text: string;
      readonly usage: Usage;
      /** Which stop string or token ended generation, if any. */
      readonly stopReason: string | number | null;
      readonly timings: RequestTimings;
      /** Which policy served the request and what it did. */
      readonly policy: PolicyReport;
      /** [completionTokens, vocabSize] log-softmax rows, when the request asked to capture them. */
      readonly capturedLogprobs?: Float32Array;
      /** What context compression dropped, when the request asked for it. */
      readonly dropped?: readonly DroppedSpan[];
      /** How the grammar went, for a constrained request. */
      readonly constraint?: ConstraintReport;
    };

/** Engine-side timings of one request, for the P-axis metrics. */
export interface RequestTimings {
  /** From submission to admission into the running batch. */
  readonly queueMs: number;
  /** From admission to the end of the last prefill chunk. */
  readonly prefillMs: number;
  /** Total engine-side time from submission to the final token. */
  readonly totalMs: number;
}

/** The inference worker: first load, serving, being replaced after a crash (until the model is reloaded), or failed for good. */
export type WorkerState = 'loading' | 'ready' | 'restarting' | 'failed';

/**
 * The weight plan an elastic-weights (STI) engine runs: the same for every
 * request (the weights are the engine's), reported in GET /v1/policies and each
 * response's cap.weights.
 */
export interface WeightPlanReport {
  /** The policy's resident budget and what the plan keeps resident (shard file bytes). */
  readonly budgetBytes: number;
  readonly residentBytes: number;
  /** The preload buffer: the first layers' shards, held in memory. */
  readonly preloadBytes: number;
  /** Shard bytes read from disk per forward pass. */
  readonly streamedBytesPerPass: number;
  /** Every shard at its planned width. */
  readonly totalBytes: number;
  /** Embeddings, norms, biases, lm_head: always resident, outside the budget. */
  readonly alwaysResidentBytes: number;
  readonly shards: number;
  /** Shards per width ("32", "8", "4", "2"). */
  readonly bitsHistogram: Readonly<Record<string, number>>;
  /** Per layer: each shard as a|m<index>:<bits><r resident | p preload | s streamed>. */
  readonly bitsPerShard: readonly string[];
  readonly targetMsPerToken: number;
  /** The planner's pipeline prediction on the measured machine; null when no target asked for a measurement. */
  readonly predictedMsPerToken: number | null;
  readonly meetsTarget: boolean;
  /** Widths chosen from a profile (adaptive) or fixed. */
  readonly profiled: boolean;
  /** Summed profiled KL cost of the chosen widths. */
  readonly profileCost: number;
}

export interface EngineHealth {
  readonly ready: boolean;
  /** Why not ready, when it is not only the first load (a worker restart, a failed worker). */
  readonly notReady?: string;
  /** Absent for engines without a worker thread (test doubles). */
  readonly worker?: WorkerState;
  /** Inference workers started to replace a crashed one since the engine started. */
  readonly workerRestarts?: number;
  readonly running: number;
  readonly waiting: number;
  readonly kvBytesUsed: number;
  readonly kvBytesCapacity: number;
  /** Bytes the prefix cache holds (inside the KV budget, not in kvBytesUsed); absent: engines without one. */
  readonly prefixCacheBytes?: number;
  /** Bytes of decode batches' gathered pasts (a copy of batched sequences' KV, outside the KV budget); absent: engines without batches. */
  readonly kvGatheredBytes?: number;
  /** Model-runner counters (MoE expert cache: hits, misses, bytes loaded, ...); empty for dense models. */
  readonly runner?: Readonly<Record<string, number>>;
  /** The elastic-weights plan, when the engine runs one (weight-elastic policy on a dense model). */
  readonly weightPlan?: WeightPlanReport;
}

export interface ModelCard {
  readonly id: string;
  readonly contextLength: number;
  readonly hasChatTemplate: boolean;
  /** The tool-call format the chat template renders tools for; null or absent: tools go in a system message (Hermes format). */
  readonly toolCallFormat?: import('../model/tokenizer-types.js').ToolCallFormat | null;
  /** Token ids run from 0 to vocabSize - 1 (the model's, which may exceed the tokenizer's); 0 until loaded. */
  readonly vocabSize: number;
  readonly createdAt: number;
  /** The most input bytes one token can stand for, when provable: lets the server refuse a prompt that cannot fit before tokenizing it. */
  readonly maxBytesPerToken?: number | null;
}

export interface EngineClient {
  /** Yields token events; ends after a 'done' event. Throws EngineError for rejected requests. */
  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<TokenEvent>;
  abort(id: string): void;
  health(): EngineHealth;
  models(): readonly ModelCard[];
  /** Resolves off the HTTP thread for large inputs: callers await it, never block on it. */
  tokenize(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]>;
  /** Like tokenize: a long id list (a million ids decode in seconds) resolves off the HTTP thread. */
  detokenize(ids: readonly number[]): Promise<string>;
  /** The strings of `ids` (alternatives at one position) after `context`, as logprobs show them (model/token-text.ts). */
  tokenTexts(context: readonly number[], ids: readonly number[]): string[];
  /** Teacher-forced scoring (shadow fidelity, perplexity); queued like generation. */
  score(request: ScoreRequest, signal?: AbortSignal): Promise<ScoreResult>;
  /** Chat template rendering; throws EngineError('no_chat_template') when the model has none. */
  renderChat(
    messages: readonly import('../model/tokenizer-types.js').ChatMessage[],
    options?: import('../model/tokenizer-types.js').ChatRenderOptions,
  ): Promise<{ text: string; addSpecialTokens: boolean }>;
  close(): Promise<void>;
}
