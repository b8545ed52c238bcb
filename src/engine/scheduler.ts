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
 *
 * With a step latency target (`stepTargetMs`) and measured pass costs, the
 * prefill allowance is a time instead: what fits the target after this step's
 * decode passes (at least as long as the decode passes themselves, so prefill
 * is never starved), converted to tokens by the measured cost of a prefill
 * pass, and never a chunk so small that a pass's fixed cost dominates it. A
 * fixed token count is too small on a fast step (the prompt goes in many
 * passes, each paying a decode pass and a pass's fixed cost: time to first
 * token grows) and too large on a slow one. Until costs are measured the token
 * budget applies. Either way a chunk that would leave only a short tail takes
 * the tail too: the prompt goes in as few passes as the allowance permits.
 *
 * Mixing decode rows and a prompt chunk in one pass (packing them into one
 * batch row with block-diagonal masks) was measured and lost: the graph's
 * attention is dense over the row, so its work grows with T x sum(C) and cost
 * 1.4-4x the two passes at 8 and 32 streams (see the branch's report).
 */
import type { GraphVariant } from '../policies/runtime.js';
import type { PassCosts } from './pass-cost.js';
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
  /** Measured pass costs (for the step latency target); null or absent: not measured yet. */
  readonly costs?: PassCosts | null;
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
  /**
   * Step latency target in ms while some sequence decodes: the prefill
   * allowance is what fits it after the decode passes, by measured costs.
   * 0 or absent: the token budget alone.
   */
  readonly stepTargetMs?: number;
}

/** A pass's fixed cost may be at most this share of a budget-sized chunk's time. */
const MAX_FIXED_SHARE = 0.25;
/** A remainder shorter than this share of the chunk joins it. */
const TAIL_SHARE = 0.25;

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
    const allowance = this.prefillAllowance(decodeTokens, input.costs ?? null);
    const fresh = this.freshBatch(prefilling, allowance ?? this.limits.prefillChunk);
    const next = prefilling.find((s) => !fresh.includes(s.id));
    let prefill: ChunkPlan | null = null;
    const left = allowance === null ? null : allowance - this.freshTokens(prefilling, fresh);
    if (next && (left === null || left > 0)) {
      const remaining = next.promptLength - next.prefilled;
      let size = Math.min(next.nextChunk, remaining);
      // Under a time target a short tail would cost a whole pass (and a step) of its own: it joins this chunk.
      const tail = left !== null && this.timed(input.costs ?? null) && remaining - left > 0 && remaining - left <= Math.ceil(left * TAIL_SHARE);
      const cap = tail ? remaining : left;
      if (cap !== null && size > cap) size = next.limitChunk ? next.limitChunk(cap) : cap;
      size = Math.max(1, Math.min(size, remaining));
      prefill = { id: next.id, size, last: next.prefilled + size >= next.promptLength, variant: next.prefillVariant };
    }
    return { aborted, admitted, decode: [...groups.values()], beforePrefill, freshPrefill: fresh, prefill };
  }

  /**
   * Prefill tokens this step may run (padding included): with a latency
   * target and measured costs, what fits the time the decode passes leave;
   * else what the decode tokens leave of the token budget, at least a quarter
   * of it; null: no bound (no target nor budget, or nobody decodes, so no one
   * waits on the prefill).
   */
  private prefillAllowance(decodeTokens: number, costs: PassCosts | null): number | null {
    if (decodeTokens === 0) return null;
    if (this.timed(costs)) {
      const target = this.limits.stepTargetMs ?? 0;
      const ms = Math.max(target - costs.decodeMs, costs.decodeMs);
      const fits = Math.floor((ms - costs.prefillFixedMs) / costs.prefillPerTokenMs);
      // Smallest chunk whose time the fixed cost does not dominate.
      const efficient = Math.ceil((costs.prefillFixedMs * (1 - MAX_FIXED_SHARE)) / (MAX_FIXED_SHARE * costs.prefillPerTokenMs));
      return Math.max(1, Math.min(this.limits.prefillChunk, Math.max(fits, efficient)));
    }
    const budget = this.limits.maxTokensPerStep ?? 0;
    if (budget <= 0) return null;
    return Math.max(budget - decodeTokens, Math.ceil(budget / 4));
  }

  /** The allowance is a time (a target is set and costs are measured). */
  private timed(costs: PassCosts | null): costs is PassCosts {
    return (this.limits.stepTargetMs ?? 0) > 0 && costs !== null && costs.prefillPerTokenMs > 0;
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
