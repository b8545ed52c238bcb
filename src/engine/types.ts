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
}

export interface TokenLogprob {
  readonly tokenId: number;
  readonly logprob: number;
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
      readonly logprob: number | null;
      readonly topLogprobs: readonly TokenLogprob[] | null;
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

export interface EngineHealth {
  readonly ready: boolean;
  readonly running: number;
  readonly waiting: number;
  readonly kvBytesUsed: number;
  readonly kvBytesCapacity: number;
}

export interface ModelCard {
  readonly id: string;
  readonly contextLength: number;
  readonly hasChatTemplate: boolean;
  readonly createdAt: number;
}

export interface EngineClient {
  /** Yields token events; ends after a 'done' event. Throws EngineError for rejected requests. */
  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<TokenEvent>;
  abort(id: string): void;
  health(): EngineHealth;
  models(): readonly ModelCard[];
  tokenize(text: string, options?: { addSpecialTokens?: boolean }): number[];
  detokenize(ids: readonly number[]): string;
  /** Chat template rendering; throws EngineError('no_chat_template') when the model has none. */
  renderChat(messages: readonly import('../model/tokenizer-types.js').ChatMessage[]): { text: string; addSpecialTokens: boolean };
  close(): Promise<void>;
}
