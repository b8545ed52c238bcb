/**
 * The runtime contract of a policy method, in the spirit of kvpress's press:
 * `instantiate(params, spec)` gives one sequence's runtime object, which says
 * per phase which graph variant it needs, how much KV it reserves, how it
 * limits prefill chunks, and does its work in hooks (before prefill, after each
 * pass) and reports what it did. The engine calls this contract only; it knows
 * no method names. A runtime belongs to one sequence and is never shared.
 */
import type { SequenceKv } from '../kv/sequence-kv.js';
import type { QuestInputs } from '../model/step-io.js';
import type { ModelSpec } from '../model/spec.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import type { TokenScorer } from './compression/scorer.js';
import type { CompressionResult, PromptSegment } from './compression/types.js';
import type { PolicyParams } from './method-types.js';
import type { PolicyKind } from './types.js';

/** Which compiled graph a forward pass runs on ('reference': every MoE expert resident, for shadow fidelity). */
export type GraphVariant = 'plain' | 'stats' | 'quest' | 'reference';

/** The variants a policy may ask for. */
export type PolicyVariant = Exclude<GraphVariant, 'reference'>;

export type Phase = 'prefill' | 'decode';

/** Where a pass sits in a sequence's life: a prefill chunk, the last prefill chunk, or a decode step. */
export type PassPhase = 'prefill-chunk' | 'prefill-end' | 'decode';

/**
 * A restriction of which past positions a query may read during prefill (on
 * top of causality and the model's own window); the step builder gathers only
 * what some query of the chunk can reach.
 */
export interface AttentionRestriction {
  allowed(queryPos: number, keyPos: number): boolean;
  /** Whether any query at or after `firstQueryPos` may read `keyPos`. */
  reachable(firstQueryPos: number, keyPos: number): boolean;
}

/** How a policy shapes a prefill pass. */
export interface PrefillShape {
  /** Query rows of attention the stats graph should report; null when the pass runs without statistics. */
  readonly attnWindow: number | null;
  readonly restrict: AttentionRestriction | null;
}

/** Where one sequence's row sits in a forward pass's statistics outputs. */
export interface StatsSlice {
  readonly row: number;
  readonly batch: number;
  /** New tokens per row in that pass. */
  readonly newTokens: number;
  /** Query rows reported per layer (attn_window). */
  readonly window: number;
  /** Per layer: the past width the graph saw (columns before the new tokens). */
  readonly pastWidth: readonly number[];
  /** Per layer: entries the cache held before this pass appended. */
  readonly lengthBefore: readonly number[];
  readonly attnSum: readonly Float32Array[];
  readonly attnRows: readonly Float32Array[];
}

/** One finished pass, as a runtime sees it after the new entries were appended to its cache. */
export interface PassResult {
  readonly phase: PassPhase;
  /** Tokens the sequence has covered so far (prompt prefilled + generated before this step). */
  readonly contextTokens: number;
  /** This sequence's share of the pass's attention statistics; null when the graph reported none. */
  readonly stats: StatsSlice | null;
}

/** What a before-prefill hook may use: one read-only object, so signatures stay short. */
export interface BeforePrefillContext {
  readonly prompt: readonly number[];
  /** Role-tagged segments the HTTP side sent; absent: the prompt is one context segment (after BOS). */
  readonly segments: readonly PromptSegment[] | undefined;
  /** A whole-prompt token target overriding the policy's own rate (overflow mode compress). */
  readonly compressionRate: number | undefined;
  readonly tokenizer: TextTokenizer;
  /** The scorer model, opened on first use; its forward passes run on the inference thread. */
  scorer(): Promise<TokenScorer & { clearCache(): void }>;
}

/** The prompt a before-prefill hook leaves; `result` is what it dropped, for the response. */
export interface BeforePrefillResult {
  readonly prompt: readonly number[];
  readonly result: CompressionResult;
}

/** What a runtime reports for the response and the metrics (the engine adds what it measures itself). */
export interface RuntimeReport {
  /** Prompt tokens before the policy acted; null: the prompt prefilled. */
  readonly promptTokens: number | null;
  /** Kept / original (compression); null: retained KV / context covered, measured by the engine. */
  readonly compressionRatio: number | null;
  readonly attentionMassRetained: number | null;
  readonly details: Readonly<Record<string, number | string>>;
}

/** One member of a decode group, for runtimes that build per-group graph inputs. */
export interface GroupMember {
  readonly runtime: PolicyRuntime;
  readonly kv: SequenceKv;
}

/** Graph inputs a variant adds to a decode pass beyond tokens, masks and the past. */
export interface GroupInputs {
  readonly quest?: QuestInputs;
}

export interface PolicyRuntime {
  readonly kind: PolicyKind;
  /** The graph variant a pass in this phase needs; may change over the sequence's life. */
  variant(phase: Phase): PolicyVariant;
  /**
   * Sequences decode in one batched pass only with equal keys (besides equal
   * variants): e.g. Quest batches share one page size.
   */
  readonly batchKey: string;
  /** The policy bounds the cache below what the sequence covers (eviction): the window does not cap the prompt. */
  readonly boundsCache: boolean;
  /** The policy may shrink the prompt before prefill (compression): the window is checked afterwards. */
  readonly shrinksPrompt: boolean;
  /** A fresh, short prompt may be prefilled in one batched pass with others (no statistics, no restriction). */
  readonly batchablePrefill: boolean;
  /**
   * null when the KV this method leaves for a prompt prefix is exactly full
   * attention's for those tokens and stays intact while the sequence runs, so a
   * prefix cache may share it across requests; otherwise why it cannot (the
   * response and the metrics report the bypass).
   */
  readonly prefixCacheBypass: string | null;
  /** KV entries per layer to reserve when the sequence covers `covered` tokens and prefills `chunk` at a time. */
  reserve(covered: number, chunk: number): number;
  /** The next prefill chunk's size, given the remaining prompt and the engine's chunk size. */
  limitChunk(remaining: number, size: number): number;
  prefillShape(lastChunk: boolean): PrefillShape;
  /** Runs once before prefill; null when the method does nothing there. */
  readonly beforePrefill: ((ctx: BeforePrefillContext) => Promise<BeforePrefillResult>) | null;
  /** Per-group graph inputs for a decode pass over `members` (all with this runtime's variant and batch key). */
  groupInputs(members: readonly GroupMember[]): GroupInputs;
  /** After every pass that appended to this sequence's cache. */
  afterPass(kv: SequenceKv, pass: PassResult): void;
  report(): RuntimeReport;
}

/** What every method exposes to build a runtime. */
export type Instantiate = (params: PolicyParams, spec: ModelSpec) => PolicyRuntime;

/** The runtime of a method that changes nothing: full attention, the plain graph, the whole context reserved. */
export class PlainRuntime implements PolicyRuntime {
  readonly batchKey: string = '';
  readonly boundsCache: boolean = false;
  readonly shrinksPrompt: boolean = false;
  readonly batchablePrefill: boolean = true;
  readonly prefixCacheBypass: string | null = null;
  readonly beforePrefill: PolicyRuntime['beforePrefill'] = null;

  constructor(readonly kind: PolicyKind) {}

  variant(_phase: Phase): PolicyVariant {
    return 'plain';
  }

  reserve(covered: number, _chunk: number): number {
    return covered;
  }

  limitChunk(_remaining: number, size: number): number {
    return size;
  }

  prefillShape(_lastChunk: boolean): PrefillShape {
    return { attnWindow: null, restrict: null };
  }

  groupInputs(_members: readonly GroupMember[]): GroupInputs {
    return {};
  }

  afterPass(_kv: SequenceKv, _pass: PassResult): void {}

  report(): RuntimeReport {
    return { promptTokens: null, compressionRatio: null, attentionMassRetained: null, details: {} };
  }
}
