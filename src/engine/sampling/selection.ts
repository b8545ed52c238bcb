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

/**
 * Rearranges ids[lo, hi) so that ids[lo, cut) is the smallest best-first
 * prefix of the range whose total weight (weight[id]) reaches target, and
 * returns cut; the prefix is left unordered. A quickselect that descends by
 * accumulated weight instead of by count, so top-p never sorts: expected
 * O(hi - lo). Returns hi when rounding leaves the whole range just short of
 * target.
 */
export function selectWeightedPrefix(ids: Int32Array, lo: number, hi: number, key: Float32Array, weight: Float64Array, target: number): number {
  let left = lo;
  let right = hi - 1;
  let acc = 0;
  let budget = 2 * Math.ceil(Math.log2(hi - lo + 1)) + 16;
  while (left <= right) {
    if (budget-- === 0) return sortedWeightedPrefix(ids, left, right + 1, key, weight, target - acc);
    const p = partitionAroundPivot(ids, left, right, key);
    let above = 0;
    for (let j = left; j < p; j++) above += weight[ids[j] ?? 0] ?? 0;
    if (acc + above >= target) {
      right = p - 1;
    } else {
      acc += above + (weight[ids[p] ?? 0] ?? 0);
      if (acc >= target) return p + 1;
      left = p + 1;
    }
  }
  return left;
}

/** Degenerate-partition fallback: sort the range and scan. */
function sortedWeightedPrefix(ids: Int32Array, lo: number, hi: number, key: Float32Array, weight: Float64Array, target: number): number {
  sortRange(ids, lo, hi, key);
  let acc = 0;
  for (let j = lo; j < hi; j++) {
    acc += weight[ids[j] ?? 0] ?? 0;
    if (acc >= target) return j + 1;
  }
  return hi;
}

/**
 * Lomuto partition of ids[left, right] around a median-of-three pivot; returns
 * the pivot's final index, with better ids before it and worse after.
 */
function partitionAroundPivot(ids: Int32Array, left: number, right: number, key: Float32Array): number {
  const mid = (left + right) >>> 1;
  const a = ids[left] ?? 0;
  const b = ids[mid] ?? 0;
  const c = ids[right] ?? 0;
  const pivot = medianOfThree(key, a, b, c);
  const pivotAt = pivot === a ? left : pivot === b ? mid : right;
  ids[pivotAt] = c;
  ids[right] = pivot;
  let store = left;
  for (let j = left; j < right; j++) {
    const id = ids[j] ?? 0;
    if (before(key, id, pivot)) {
      ids[j] = ids[store] ?? 0;
      ids[store++] = id;
    }
  }
  ids[right] = ids[store] ?? 0;
  ids[store] = pivot;
  return store;
}

function medianOfThree(key: Float32Array, a: number, b: number, c: number): number {
  if (before(key, a, b)) {
    if (before(key, b, c)) return b;
    return before(key, a, c) ? c : a;
  }
  if (before(key, a, c)) return a;
  return before(key, b, c) ? c : b;
}
