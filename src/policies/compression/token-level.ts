/**
 * LLMLingua's iterative token-level compression (Algorithm 1, "ITPC"): the
 * compressible text is cut into windows of `iterativeSize` tokens; each
 * window is scored conditioned on the already-compressed prompt before it,
 * and its most surprising tokens are kept up to the window's quota. With a
 * condition (LongLLMLingua), a token's score is how much more predictable the
 * question makes it: log p(x | question, prefix) - log p(x | prefix).
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

interface Window {
  /** Range in `order`. */
  readonly from: number;
  readonly to: number;
  quota: number;
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
    const block = order.slice(w.from, w.to);
    const seq = [...prefix, ...block.map((pos) => flat.tokens[pos] ?? 0)];
    const candidates: number[] = [];
    for (let k = 0; k < block.length; k++) if (flat.compressible[block[k] ?? 0] === 1) candidates.push(k);
    let chosen: Uint8Array;
    if (w.quota >= candidates.length) {
      chosen = new Uint8Array(candidates.length).fill(1);
    } else {
      const scores = await scoreBlock(seq, prefix.length, candidates, input.condition, scorer);
      calls += input.condition === null ? 1 : 2;
      chosen = topK(scores, w.quota);
    }
    const keepInBlock = new Uint8Array(block.length).fill(1);
    candidates.forEach((k, c) => {
      keepInBlock[k] = chosen[c] ?? 0;
    });
    for (let k = 0; k < block.length; k++) {
      const pos = block[k] ?? 0;
      if (keepInBlock[k] === 1) {
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
 * among them ride along). Quotas follow the cumulative ratio, scaled to sum
 * to `keep` exactly and capped at each window's size (any remainder carries
 * forward).
 */
function planWindows(input: TokenLevelInput): Window[] {
  const { flat, order, ratio, iterativeSize } = input;
  const windows: Window[] = [];
  const weights: number[] = [];
  const sizes: number[] = [];
  let count = 0;
  let weight = 0;
  let from = -1;
  for (let i = 0; i < order.length; i++) {
    const pos = order[i] ?? 0;
    if (flat.compressible[pos] !== 1) continue;
    if (count === iterativeSize) {
      windows.push({ from, to: i, quota: 0 });
      weights.push(weight);
      sizes.push(count);
      count = 0;
      weight = 0;
      from = -1;
    }
    if (from < 0) from = i;
    count++;
    weight += Math.min(1, Math.max(0, ratio[pos] ?? 0));
  }
  if (count > 0) {
    windows.push({ from, to: order.length, quota: 0 });
    weights.push(weight);
    sizes.push(count);
  }
  // The last window runs to the end of `order`; the others end where the next begins.
  for (let j = 0; j + 1 < windows.length; j++) {
    const w = windows[j];
    const nextW = windows[j + 1];
    if (w !== undefined && nextW !== undefined) windows[j] = { from: w.from, to: nextW.from, quota: 0 };
  }
  const total = weights.reduce((a, b) => a + b, 0);
  let cum = 0;
  let before = 0;
  let carry = 0;
  windows.forEach((w, j) => {
    cum += weights[j] ?? 0;
    const upto = j === windows.length - 1 || total <= 0 ? input.keep : Math.min(input.keep, Math.floor((input.keep * cum) / total + 1e-9));
    const want = Math.max(0, upto - before) + carry;
    before = Math.max(before, upto);
    w.quota = Math.min(sizes[j] ?? 0, want);
    carry = want - w.quota;
  });
  // Anything still owed (a late window was full) goes back to earlier windows with room.
  let owed = input.keep - windows.reduce((a, w) => a + w.quota, 0);
  for (let j = windows.length - 1; j >= 0 && owed > 0; j--) {
    const w = windows[j];
    if (w === undefined) continue;
    const room = (sizes[j] ?? 0) - w.quota;
    const add = Math.min(room, owed);
    w.quota += add;
    owed -= add;
  }
  return windows;
}

async function scoreBlock(
  seq: readonly number[],
  blockStart: number,
  candidates: readonly number[],
  condition: TokenLevelInput['condition'],
  scorer: TokenScorer,
): Promise<Float64Array> {
  const lp = await scorer.logprobs(seq);
  const scores = new Float64Array(candidates.length);
  if (condition === null) {
    candidates.forEach((k, c) => {
      scores[c] = -(lp[blockStart + k] ?? Number.NaN);
    });
    return scores;
  }
  const at = Math.min(condition.at, seq.length);
  const conditioned = [...seq.slice(0, at), ...condition.tokens, ...seq.slice(at)];
  const lpq = await scorer.logprobs(conditioned);
  const shift = (i: number): number => (i >= at ? i + condition.tokens.length : i);
  candidates.forEach((k, c) => {
    const i = blockStart + k;
    scores[c] = (lpq[shift(i)] ?? Number.NaN) - (lp[i] ?? Number.NaN);
  });
  return scores;
}
