/**
 * One request inside the engine, with explicit states:
 * waiting -> prefilling -> decoding -> finished (or aborted at any point).
 */
import type { SequenceKv } from '../kv/sequence-kv.js';
import type { EvictionState } from './eviction-state.js';
import type { QuestState } from './quest-state.js';
import type { SinkWindowParams } from '../policies/sparse-attention/sink-window.js';
import type { CompressionResult } from '../policies/compression/types.js';
import type { DecodeStream } from '../model/tokenizer-types.js';
import { SequenceSampler, StopMatcher } from './sampling/index.js';
import type { FinishReason, GenerateRequest, ScoreRequest } from './types.js';
import type { GrammarAutomaton } from './grammar/automaton.js';
import { GrammarMatcher } from './grammar/matcher.js';

export type SequenceState = 'waiting' | 'compressing' | 'prefilling' | 'decoding' | 'finished';

export class Sequence {
  state: SequenceState = 'waiting';
  kv: SequenceKv | null = null;
  /** Prompt tokens already prefilled. */
  prefilled = 0;
  /** The token to feed at the next decode step (the last sampled one). */
  pendingToken = -1;
  generated = 0;
  abortRequested = false;
  finishReason: FinishReason | null = null;
  stopReason: string | number | null = null;
  readonly sampler: SequenceSampler;
  readonly stopMatcher: StopMatcher;
  readonly stopIds: ReadonlySet<number>;
  readonly submittedAt = performance.now();
  admittedAt = 0;
  prefillDoneAt = 0;
  /** KV-eviction state when the serving policy evicts; null for full attention. */
  eviction: EvictionState | null = null;
  /** The prompt actually prefilled: the request's, or what context compression kept. */
  prompt: readonly number[];
  /** Context compression's outcome, when the policy compresses. */
  compression: CompressionResult | null = null;
  compressMs = 0;
  /** Quest page-selection state when the serving policy is Quest. */
  quest: QuestState | null = null;
  /** A-shape prefill mask when the serving policy is sink-window. */
  sinkWindow: SinkWindowParams | null = null;
  /** Set for teacher-forced scoring requests: prefill only, no sampling. */
  scoring: ScoreRequest | null = null;
  readonly scoredTargets: number[] = [];
  readonly scoredRows: Float32Array[] = [];
  /** Log-softmax rows of generated steps when the request captures them. */
  readonly captured: Float32Array[] = [];
  /** Entries this sequence may hold per layer: what admission reserves. */
  reservation = 0;

  constructor(
    readonly request: GenerateRequest,
    vocabSize: number,
    readonly decodeStream: DecodeStream,
    eosTokenIds: readonly number[],
    /** Total tokens (prompt + generated) the model's window allows. */
    readonly contextLength: number,
    /** The request's grammar (response_format, tools), shared with requests of the same grammar. */
    grammar: GrammarAutomaton | null = null,
  ) {
    this.prompt = request.promptTokens;
    this.stopMatcher = new StopMatcher(request.sampling.stop);
    const ids = new Set<number>(request.sampling.stopTokenIds);
    if (!request.sampling.ignoreEos) for (const id of eosTokenIds) ids.add(id);
    this.stopIds = ids;
    const matcher = grammar === null ? null : new GrammarMatcher(grammar, ids);
    this.sampler = new SequenceSampler(request.sampling, vocabSize, request.promptTokens, matcher);
  }

  get id(): string {
    return this.request.id;
  }

  get promptLength(): number {
    return this.prompt.length;
  }

  /** Tokens the sequence covers at most (prompt + generated), capped by the window unless a policy evicts. */
  get maxTokensCovered(): number {
    const total = this.promptLength + (this.scoring ? 0 : this.request.sampling.maxTokens);
    return this.eviction || this.scoring ? total : Math.min(this.contextLength, total);
  }
}
