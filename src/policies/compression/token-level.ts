/**
 * LLMLingua's iterative token-level compression (Algorithm 1): the
 * compressible text is cut into windows of `iterativeSize` tokens; each
 * window is scored conditioned on the already-compressed prompt before it,
 * and its most surprising tokens are kept. Inside a window every document's
 * run has its own quota (its ratio, as the reference gives each segment its
 * own threshold), so LongLLMLingua's dynamic ratio reaches the token level.
 * With a condition (LongLLMLingua), a token's score is how much more
 * predictable the question makes it: log p(x | question, prefix) - log p(x | prefix).
 */
import type { TokenScorer } from './scorer.js';
import type { FlatPrompt } from './segments.js';
import { topK } from './select.js';

export interface TokenLevelInput {
  readonly flat: FlatPrompt;
  /** Flat positions in output order: the protected tokens and the compressible tokens still in play. */
  readonly order: readonly number[];
  /** Per flat position, the share of that token's document to keep (only compressible positions are read). */
  readonly ratio: Float64Array;
  /** Compressible tokens to keep in total; quotas are scaled so they sum to exactly this. */
  readonly keep: number;
  readonly iterativeSize: number;
  /** Question tokens inserted at sequence index `at` for the conditioned pass; null: plain surprisal. */
  readonly condition: { readonly tokens: readonly number[]; readonly at: number } | null;
}

export interface TokenLevelOutput {
  /** Over flat positions; positions not in `order` are 0. */
  readonly keep: Uint8Array;
  readonly windows: number;
  readonly scorerCalls: number;
}

/** Consecutive compressible tokens of one window sharing one ratio: indices into `order`. */
interface Run {
  readonly members: number[];
  weight: number;
  quota: number;
}

interface Window {
  /** Range in `order`; the last window runs to its end. */
  readonly from: number;
  to: number;
  readonly runs: Run[];
}

export async function compressTokenLevel(input: TokenLevelInput, scorer: TokenScorer): Promise<TokenLevelOutput> {
  const { flat, order } = input;
  const keep = new Uint8Array(flat.tokens.length);
  const windows = planWindows(input);
  const prefix: number[] = [];
  let calls = 0;
  let next = 0;
  for (const w of windows) {
    // Protected tokens before the window's first compressible token go straight into the prefix.
    for (; next < w.from; next++) {
      const pos = order[next] ?? 0;
      keep[pos] = 1;
      prefix.push(flat.tokens[pos] ?? 0);
    }
    const chosen = new Set<number>();
    const needsScores = w.runs.some((r) => r.quota < r.members.length);
    let scores: Float64Array | null = null;
    if (needsScores) {
      const block = order.slice(w.from, w.to).map((pos) => flat.tokens[pos] ?? 0);
      scores = await scoreBlock([...prefix, ...block], prefix.length, input.condition, scorer);
      calls += input.condition === null ? 1 : 2;
    }
    for (const run of w.runs) {
      if (scores === null || run.quota >= run.members.length) {
        for (const m of run.members) chosen.add(m);
        continue;
      }
      const runScores = run.members.map((m) => scores[m - w.from] ?? Number.NaN);
      const top = topK(runScores, run.quota);
      run.members.forEach((m, i) => {
        if (top[i] === 1) chosen.add(m);
      });
    }
    for (let i = w.from; i < w.to; i++) {
      const pos = order[i] ?? 0;
      if (flat.compressible[pos] !== 1 || chosen.has(i)) {
        keep[pos] = 1;
        prefix.push(flat.tokens[pos] ?? 0);
      }
    }
    next = w.to;
  }
  for (; next < order.length; next++) keep[order[next] ?? 0] = 1;
  return { keep, windows: windows.length, scorerCalls: calls };
}

/**
 * Windows hold up to `iterativeSize` compressible tokens (protected tokens
 * among them ride along). Run quotas follow the cumulative ratio, scaled to
 * sum to `keep` exactly and capped at each run's size; whatever a full run
 * cannot take moves on to the next, and any rest goes back to runs with room.
 */
function planWindows(input: TokenLevelInput): Window[] {
  const { flat, order, ratio, iterativeSize } = input;
  const windows: Window[] = [];
  let current: Window | null = null;
  let count = 0;
  let lastRatio = Number.NaN;
  for (let i = 0; i < order.length; i++) {
    const pos = order[i] ?? 0;
    if (flat.compressible[pos] !== 1) continue;
    if (current === null || count === iterativeSize) {
      if (current !== null) current.to = i;
      current = { from: i, to: order.length, runs: [] };
      windows.push(current);
      count = 0;
      lastRatio = Number.NaN;
    }
    const r = Math.min(1, Math.max(0, ratio[pos] ?? 0));
    const run = current.runs[current.runs.length - 1];
    if (run === undefined || r !== lastRatio) current.runs.push({ members: [i], weight: r, quota: 0 });
    else {
      run.members.push(i);
      run.weight += r;
    }
    lastRatio = r;
    count++;
  }
  const runs = windows.flatMap((w) => w.runs);
  const total = runs.reduce((a, r) => a + r.weight, 0);
  let cum = 0;
  let before = 0;
  let carry = 0;
  runs.forEach((run, j) => {
    cum += run.weight;
    const upto = j === runs.length - 1 || total <= 0 ? input.keep : Math.min(input.keep, Math.floor((input.keep * cum) / total + 1e-9));
    const want = Math.max(0, upto - before) + carry;
    before = Math.max(before, upto);
    run.quota = Math.min(run.members.length, want);
    carry = want - run.quota;
  });
  for (let j = runs.length - 1; j >= 0 && carry > 0; j--) {
    const run = runs[j];
    if (run === undefined) continue;
    const add = Math.min(run.members.length - run.quota, carry);
    run.quota += add;
    carry -= add;
  }
  return windows;
}

/** Scores of the block's tokens (index 0 = first block token), higher = keep. */
async function scoreBlock(seq: readonly number[], blockStart: number, condition: TokenLevelInput['condition'], scorer: TokenScorer): Promise<Float64Array> {
  const lp = await scorer.logprobs(seq);
  const n = seq.length - blockStart;
  const scores = new Float64Array(n);
  if (condition === null) {
    for (let k = 0; k < n; k++) scores[k] = -(lp[blockStart + k] ?? Number.NaN);
    return scores;
  }
  const at = Math.min(condition.at, seq.length);
  const conditioned = [...seq.slice(0, at), ...condition.tokens, ...seq.slice(at)];
  const lpq = await scorer.logprobs(conditioned);
  const shift = (i: number): number => (i >= at ? i + condition.tokens.length : i);
  for (let k = 0; k < n; k++) {
    const i = blockStart + k;
    scores[k] = (lpq[shift(i)] ?? Number.NaN) - (lp[i] ?? Number.NaN);
  }
  return scores;
}
