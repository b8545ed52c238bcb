import type { TokenLogprob } from '../types.js';
import { expNonPositive } from './fast-exp.js';
import { selectTop, sortRange } from './selection.js';

export interface LogprobsResult {
  readonly logprob: number;
  readonly topLogprobs: TokenLogprob[];
}

/**
 * Log-softmax of `logits`, evaluated in float64 (exp to ~1e-13 relative), for the chosen token and the
 * best `topN` tokens (logprob descending, ties by lowest id). Tokens at
 * -Infinity are never listed, so the list may be shorter than topN.
 * `ids` is a vocab-sized scratch buffer.
 */
export function computeLogprobs(logits: Float32Array, chosen: number, topN: number, ids: Int32Array): LogprobsResult {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i] ?? -Infinity;
    if (l > max) max = l;
  }
  if (!(max > -Infinity)) throw new Error('cannot compute logprobs: every logit is -Infinity');
  let sum = 0;
  let n = 0;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i] ?? -Infinity;
    if (l > -Infinity) {
      sum += expNonPositive(l - max);
      ids[n++] = i;
    }
  }
  const logZ = max + Math.log(sum);
  const logprob = (logits[chosen] ?? -Infinity) - logZ;

  const k = Math.min(topN, n);
  const topLogprobs: TokenLogprob[] = new Array<TokenLogprob>(k);
  if (k > 0) {
    selectTop(ids, 0, n, k, logits);
    sortRange(ids, 0, k, logits);
    for (let j = 0; j < k; j++) {
      const id = ids[j] ?? 0;
      topLogprobs[j] = { tokenId: id, logprob: (logits[id] ?? 0) - logZ };
    }
  }
  return { logprob, topLogprobs };
}
