import type { TokenLogprob } from '../types.js';
import { selectTop, sortRange } from './selection.js';

export interface LogprobsResult {
  readonly logprob: number;
  readonly topLogprobs: TokenLogprob[];
}

/**
 * Log-softmax of `logits` for the chosen token and the best `topN` tokens (logprob descending,
 * ties by lowest id), given `logZ` = log(sum(exp(logits))) (the sampling kernel's, see
 * SequenceSampler: float32 weights summed in float64, within about 1e-7 of float64's, below the
 * float32 logits' own rounding). Tokens at -Infinity are never listed, so the list may be shorter
 * than topN. `ids` is a vocab-sized scratch buffer.
 */
export function computeLogprobs(logits: Float32Array, chosen: number, topN: number, ids: Int32Array, logZ: number): LogprobsResult {
  if (!(logZ > -Infinity)) throw new Error('cannot compute logprobs: every logit is -Infinity');
  const logprob = (logits[chosen] ?? -Infinity) - logZ;
  if (topN <= 0) return { logprob, topLogprobs: [] };
  const k = topN <= SMALL_TOP ? bestFew(logits, topN, ids) : bestMany(logits, topN, ids);
  const topLogprobs: TokenLogprob[] = new Array<TokenLogprob>(k);
  for (let j = 0; j < k; j++) {
    const id = ids[j] ?? 0;
    topLogprobs[j] = { tokenId: id, logprob: (logits[id] ?? 0) - logZ };
  }
  return { logprob, topLogprobs };
}

/** Up to this many, the best tokens come from one pass keeping a sorted list (the API allows 20). */
const SMALL_TOP = 64;

/**
 * The best k ids of `logits` into ids[0, n), best first, ties by lowest id, -Infinity never
 * listed; returns n <= k. One pass: a token enters only when it beats the k-th best so far, which
 * for k << V happens about k ln(V / k) times.
 */
function bestFew(logits: Float32Array, k: number, ids: Int32Array): number {
  let n = 0;
  let floor = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] ?? -Infinity;
    if (!(v > floor)) continue;
    let j = n < k ? n++ : k - 1;
    // Strictly below: an equal logit seen earlier (a lower id) stays ahead.
    while (j > 0 && (logits[ids[j - 1] ?? 0] ?? -Infinity) < v) {
      ids[j] = ids[j - 1] ?? 0;
      j--;
    }
    ids[j] = i;
    if (n === k) floor = logits[ids[k - 1] ?? 0] ?? -Infinity;
  }
  return n;
}

/** As bestFew, for larger k: every finite id, a quickselect of the best k, then sorted. */
function bestMany(logits: Float32Array, k: number, ids: Int32Array): number {
  let n = 0;
  for (let i = 0; i < logits.length; i++) if ((logits[i] ?? -Infinity) > -Infinity) ids[n++] = i;
  const kept = Math.min(k, n);
  selectTop(ids, 0, n, kept, logits);
  sortRange(ids, 0, kept, logits);
  return kept;
}
