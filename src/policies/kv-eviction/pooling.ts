export type Pooling = 'max' | 'avg';

/**
 * 1-D pooling with stride 1 and padding kernel // 2, as SnapKV's reference code
 * calls torch's max_pool1d / avg_pool1d: max ignores the padding, avg counts it
 * as zeros (divides by the kernel size). Adds the result into out[outOffset + j].
 * The kernel must be odd so the output keeps the input's length.
 */
export function addPooled(row: Float64Array, n: number, kernel: number, mode: Pooling, out: Float32Array, outOffset: number): void {
  const r = kernel >> 1;
  if (mode === 'max') {
    for (let j = 0; j < n; j++) {
      const lo = Math.max(0, j - r);
      const hi = Math.min(n - 1, j + r);
      let m = Number.NEGATIVE_INFINITY;
      for (let i = lo; i <= hi; i++) {
        const v = row[i] ?? 0;
        if (v > m) m = v;
      }
      out[outOffset + j] = (out[outOffset + j] ?? 0) + m;
    }
    return;
  }
  let sum = 0;
  for (let i = 0; i < Math.min(r, n); i++) sum += row[i] ?? 0;
  for (let j = 0; j < n; j++) {
    if (j + r < n) sum += row[j + r] ?? 0;
    if (j - r - 1 >= 0) sum -= row[j - r - 1] ?? 0;
    out[outOffset + j] = (out[outOffset + j] ?? 0) + sum / kernel;
  }
}
