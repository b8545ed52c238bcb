/** log-softmax of one logits row, in float64 accumulation (a fresh array). */
export function logSoftmaxRow(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i] ?? -Infinity;
    if (v > max) max = v;
  }
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp((logits[i] ?? -Infinity) - max);
  const lse = max + Math.log(sum);
  const out = new Float32Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = (logits[i] ?? -Infinity) - lse;
  return out;
}
