/**
 * The scheduler: from plain data about the queued and running sequences and
 * the free KV budget, decides one engine step (vLLM v1's schedule()): which
 * aborted sequences to reap, which waiting ones to admit (head of line, by KV
 * reservation, never evicting behind anyone's back), which decoding sequences
 * run together (one pass per graph variant and batch key), which sequence runs
 * its before-prefill hook, which fresh short prompts share one padded prefill
 * pass, and which sequence prefills its next chunk, of what size. It touches no
 * tensors, no runner and no sequence object: the returned plan is data.
 *
 * With a token budget per step (`maxTokensPerStep`, vLLM's chunked-prefill
 * scheduling) every decoding sequence still advances one token each step, and
 * the prefill passes of that step share what the decode tokens leave of the
 * budget (never less than a quarter of it, so prefills are never starved):
 * a decode step waits for at most one bounded chunk. Prefills are served first
 * come, first served. Without a budget (0) a step prefills a whole
 * `prefillChunk` (the behaviour before budgets).
 */
import type { GraphVariant } from '../policies/runtime.js';
import type { SequenceState } from './sequence.js';

/** What the scheduler reads of one sequence. */
export interface SchedulerSeq {
  readonly id: string;
  readonly state: SequenceState;
  readonly abortRequested: boolean;
  /** KV bytes admission must reserve. */
  readonly reserveBytes: number;
  /** Tokens of the prompt to prefill (after any before-prefill hook). */
  readonly promptLength: number;
  readonly prefilled: number;
  /** Size of its next prefill chunk, as its policy limits it (before capping at what remains). */
  readonly nextChunk: number;
  /** Whether a fresh, short prompt of it may share a padded prefill pass with others. */
  readonly batchablePrefill: boolean;
  readonly prefillVariant: GraphVariant;
  readonly decodeVariant: GraphVariant;
  /** Decoding sequences share a pass only with equal variant and key. */
  readonly decodeKey: string;
  /** It runs a before-prefill hook once admitted. */
  readonly hasBeforePrefill: boolean;
  /** Prompt tokens whose KV the prefix cache holds: a waiting sequence starts its prefill there once admitted. */
  readonly cachedPrefix?: number;
  /**
   * The policy's limit on a chunk the budget caps at `size` tokens (e.g. an
   * observation window that must fit the last chunk); absent: `size`.
   */
  readonly limitChunk?: (size: number) => number;
}

export interface SchedulerInput {
  /** In arrival order. */
  readonly waiting: readonly SchedulerSeq[];
  /** In admission order. */
  readonly running: readonly SchedulerSeq[];
  /** KV budget not yet reserved. */
  readonly kvFreeBytes: number;
}

export interface SchedulerLimits {
  readonly maxConcurrent: number;
  /** Token budget of one prefill pass (a chunk, or a padded batch of fresh prompts). */
  readonly prefillChunk: number;
  /**
   * Tokens one step may run while some sequence decodes: its decode tokens
   * plus its prefill passes (padding included). 0 or absent: no budget.
   */
  readonly maxTokensPerStep?: number;
}

export interface DecodeGroupPlan {
  readonly variant: GraphVariant;
  readonly key: string;
  readonly ids: readonly string[];
}

export interface ChunkPlan {
  readonly id: string;
  readonly size: number;
  /** This chunk ends the prompt. */
  readonly last: boolean;
  readonly variant: GraphVariant;
}

export interface Admission {
  readonly id: string;
  /** The state it starts in: 'compressing' when it runs a before-prefill hook, else 'prefilling'. */
  readonly state: Extract<SequenceState, 'compressing' | 'prefilling'>;
}

export interface StepPlan {
  readonly aborted: readonly string[];
  readonly admitted: readonly Admission[];
  readonly decode: readonly DecodeGroupPlan[];
  readonly beforePrefill: string | null;
  /** Two or more fresh prompts prefilled in one padded pass; empty otherwise. */
  readonly freshPrefill: readonly string[];
  readonly prefill: ChunkPlan | null;
}

export class Scheduler {
  constructor(private readonly limits: SchedulerLimits) {}

  schedule(input: SchedulerInput): StepPlan {
    const aborted = [...input.waiting, ...input.running].filter((s) => s.abortRequested).map((s) => s.id);
    const running: { seq: SchedulerSeq; state: SequenceState }[] = input.running.filter((s) => !s.abortRequested).map((s) => ({ seq: s, state: s.state }));
    const admitted: Admission[] = [];
    let free = input.kvFreeBytes;
    for (const s of input.waiting) {
      if (s.abortRequested) continue;
      if (running.length >= this.limits.maxConcurrent || s.reserveBytes > free) break; // no room: wait for a finish
      free -= s.reserveBytes;
      const state = s.hasBeforePrefill ? 'compressing' : 'prefilling';
      admitted.push({ id: s.id, state });
      // Admission attaches the cached prefix: its prefill starts after it.
      running.push({ seq: { ...s, prefilled: Math.max(s.prefilled, s.cachedPrefix ?? 0) }, state });
    }

    const groups = new Map<string, { variant: GraphVariant; key: string; ids: string[] }>();
    for (const { seq, state } of running) {
      if (state !== 'decoding') continue;
      const k = `${seq.decodeVariant}\u0000${seq.decodeKey}`;
      let g = groups.get(k);
      if (!g) {
        g = { variant: seq.decodeVariant, key: seq.decodeKey, ids: [] };
        groups.set(k, g);
      }
      g.ids.push(seq.id);
    }

    const beforePrefill = running.find((r) => r.state === 'compressing')?.seq.id ?? null;
    const prefilling = running.filter((r) => r.state === 'prefilling').map((r) => r.seq);
    const decodeTokens = running.filter((r) => r.state === 'decoding').length;
    const allowance = this.prefillAllowance(decodeTokens);
    const fresh = this.freshBatch(prefilling, allowance ?? this.limits.prefillChunk);
    const next = prefilling.find((s) => !fresh.includes(s.id));
    let prefill: ChunkPlan | null = null;
    const left = allowance === null ? null : allowance - this.freshTokens(prefilling, fresh);
    if (next && (left === null || left > 0)) {
      const remaining = next.promptLength - next.prefilled;
      let size = Math.min(next.nextChunk, remaining);
      if (left !== null && size > left) size = next.limitChunk ? next.limitChunk(left) : left;
      size = Math.max(1, Math.min(size, remaining));
      prefill = { id: next.id, size, last: next.prefilled + size >= next.promptLength, variant: next.prefillVariant };
    }
    return { aborted, admitted, decode: [...groups.values()], beforePrefill, freshPrefill: fresh, prefill };
  }

  /**
   * Prefill tokens this step may run (padding included): what the decode
   * tokens leave of the budget, at least a quarter of it; null: no bound
   * (no budget, or nobody decodes, so no one waits on the prefill).
   */
  private prefillAllowance(decodeTokens: number): number | null {
    const budget = this.limits.maxTokensPerStep ?? 0;
    if (budget <= 0 || decodeTokens === 0) return null;
    return Math.max(budget - decodeTokens, Math.ceil(budget / 4));
  }

  /** Tokens the padded fresh-prompt pass runs. */
  private freshTokens(prefilling: readonly SchedulerSeq[], fresh: readonly string[]): number {
    let longest = 0;
    for (const s of prefilling) if (fresh.includes(s.id)) longest = Math.max(longest, s.promptLength);
    return longest * fresh.length;
  }

  /**
   * Short prompts of newly admitted batchable sequences, packed into one pass
   * (padded to the longest, within the prefill budget): under a burst, time to
   * first token does not grow by one step per queued prompt.
   */
  private freshBatch(prefilling: readonly SchedulerSeq[], budget: number): string[] {
    const picked: string[] = [];
    let longest = 0;
    for (const s of prefilling) {
      if (!s.batchablePrefill || s.prefilled !== 0 || s.promptLength > budget) continue;
      const next = Math.max(longest, s.promptLength);
      if ((picked.length + 1) * next > budget) break;
      picked.push(s.id);
      longest = next;
    }
    return picked.length >= 2 ? picked : [];
  }
}
