import { sharedScratch } from './sampling/scratch.js';

/**
 * log(sum(exp(row))) of one logits row, by the sampling kernel's vectorized passes (the largest
 * logit, then every weight exp(l - max) summed in float64; softmax-kernel.ts): about 0.1 ms at a
 * 49K vocabulary, against 0.4-0.6 ms for a JavaScript pass of Math.exp. The weights are float32,
 * so the result is within about 1e-7 of float64's (the logprobs built on it are float32).
 * NaN when the row holds a NaN. Uses the thread's shared sampling scratch (synchronous, like sampling).
 */
export function logSumExp(row: Float32Array): number {
  const { kernel } = sharedScratch(row.length);
  kernel.logits.set(row);
  const max = kernel.max();
  if (!(max > -Infinity) || !(max < Infinity)) return max === -Infinity ? -Infinity : Number.NaN;
  return max + Math.log(kernel.expWeights(max, 1));
}

/** log-softmax of one logits row (a fresh array). */
export function logSoftmaxRow(logits: Float32Array): Float32Array {
  const lse = logSumExp(logits);
  const out = new Float32Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = (logits[i] ?? -Infinity) - lse;
  return out;
}
