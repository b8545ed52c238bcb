/**
 * Partial selection over token ids keyed by logits. The order is a strict total
 * order (logit descending, then id ascending), so ties resolve to the lowest id
 * and results never depend on where ids sit in the buffer. Keys must be finite
 * for the ids passed in.
 */

function before(key: Float32Array, a: number, b: number): boolean {
  const ka = key[a] ?? 0;
  const kb = key[b] ?? 0;
  return ka > kb || (ka === kb && a < b);
}

/** Sorts ids[lo, hi) best first. */
export function sortRange(ids: Int32Array, lo: number, hi: number, key: Float32Array): void {
  if (hi - lo < 2) return;
  ids.subarray(lo, hi).sort((a, b) => (key[b] ?? 0) - (key[a] ?? 0) || a - b);
}

/**
 * Rearranges ids[lo, hi) so that ids[lo, lo + m) are its m best ids, in no
 * particular order. Quickselect (Hoare partition, median-of-three pivot),
 * expected O(hi - lo); falls back to sorting the remaining range if
 * partitioning degenerates, so the worst case is O(n log n), not O(n^2).
 */
export function selectTop(ids: Int32Array, lo: number, hi: number, m: number, key: Float32Array): void {
  if (m <= 0 || lo + m >= hi) return;
  const k = lo + m - 1;
  let left = lo;
  let right = hi - 1;
  let budget = 2 * Math.ceil(Math.log2(hi - lo)) + 16;
  while (left < right) {
    if (budget-- === 0) {
      sortRange(ids, left, right + 1, key);
      return;
    }
    const pivot = medianOfThree(key, ids[left] ?? 0, ids[(left + right) >>> 1] ?? 0, ids[right] ?? 0);
    let i = left;
    let j = right;
    while (i <= j) {
      while (before(key, ids[i] ?? 0, pivot)) i++;
      while (before(key, pivot, ids[j] ?? 0)) j--;
      if (i <= j) {
        const t = ids[i] ?? 0;
        ids[i] = ids[j] ?? 0;
        ids[j] = t;
        i++;
        j--;
      }
    }
    // Now ids[left, j] rank no worse than the pivot and ids[i, right] no better;
    // anything strictly between equals the pivot and sits in its final place.
    if (k <= j) right = j;
    else if (k >= i) left = i;
    else return;
  }
}

function medianOfThree(key: Float32Array, a: number, b: number, c: number): number {
  if (before(key, a, b)) {
    if (before(key, b, c)) return b;
    return before(key, a, c) ? c : a;
  }
  if (before(key, a, c)) return a;
  return before(key, b, c) ? c : b;
}
