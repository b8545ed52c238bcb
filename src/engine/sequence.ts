/**
 * One request inside the engine, with explicit states:
 * waiting -> prefilling -> decoding -> finished (or aborted at any point).
 */
import type { SequenceKv } from '../kv/sequence-kv.js';
import type { DroppedSpan } from '../policies/compression/types.js';
import type { PolicyRuntime } from '../policies/runtime.js';
import type { PrefixCacheUse } from '../policies/types.js';
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
  /** The prompt actually prefilled: the request's, or what the policy's before-prefill hook kept. */
  prompt: readonly number[];
  /** What the before-prefill hook dropped, when it shrank the prompt. */
  dropped: readonly DroppedSpan[] | null = null;
  /** Time the before-prefill hook took (the scorer's forward passes). */
  beforePrefillMs = 0;
  /** Set for teacher-forced scoring requests: prefill only, no sampling. */
  scoring: ScoreRequest | null = null;
  readonly scoredTargets: number[] = [];
  readonly scoredRows: Float32Array[] = [];
  /** Log-softmax rows of generated steps when the request captures them. */
  readonly captured: Float32Array[] = [];
  /** Entries this sequence may hold per layer: what admission reserves. */
  reservation = 0;
  /** Tokens sampled so far, in order (the last one has no KV entry yet). */
  readonly outputTokens: number[] = [];
  /** Prefix-cache chain keys of the prompt's full blocks, computed once (prefix-reuse.ts). */
  prefixKeys: readonly string[] | null = null;
  /** What the prefix cache did at admission; null without a cache (or before admission). */
  prefixCache: PrefixCacheUse | null = null;

  constructor(
    readonly request: GenerateRequest,
    /** The serving policy's runtime for this sequence (full attention's when there is none). */
    readonly runtime: PolicyRuntime,
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

  /** Tokens the sequence covers at most (prompt + generated), capped by the window unless the policy bounds the cache. */
  get maxTokensCovered(): number {
    const total = this.promptLength + (this.scoring ? 0 : this.request.sampling.maxTokens);
    return this.runtime.boundsCache || this.scoring ? total : Math.min(this.contextLength, total);
  }

  /** Context covered so far as a policy counts it: prompt prefilled plus tokens generated before this step. */
  contextTokens(decoding: boolean): number {
    return this.prefilled + Math.max(0, this.generated - (decoding ? 0 : 1));
  }
}
