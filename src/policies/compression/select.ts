/**
 * Budgeted selection, written once. A NaN score means "no prediction" (the
 * first token of a sequence): it cannot be judged, so it ranks as most
 * informative and is dropped last.
 */

function key(v: number | undefined): number {
  return v === undefined || Number.isNaN(v) ? Number.POSITIVE_INFINITY : v;
}

/**
 * Drops whole units in ascending score order (ties: the earlier unit first)
 * while the kept tokens exceed `budget`. The kept total ends at most `budget`
 * and above `budget` minus the last dropped unit's length: the rate is met
 * within one unit. This is the percentile rule of Selective Context with the
 * percentile taken over tokens rather than units.
 */
export function dropLowest(scores: ArrayLike<number>, lengths: ArrayLike<number>, budget: number): Uint8Array {
  const n = scores.length;
  const keep = new Uint8Array(n).fill(1);
  let kept = 0;
  for (let i = 0; i < n; i++) kept += lengths[i] ?? 0;
  if (kept <= budget) return keep;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => key(scores[a]) - key(scores[b]) || a - b);
  for (const u of order) {
    if (kept <= budget) break;
    keep[u] = 0;
    kept -= lengths[u] ?? 0;
  }
  return keep;
}

/** Marks the `k` highest scores (ties: the earlier index wins). */
export function topK(scores: ArrayLike<number>, k: number): Uint8Array {
  const n = scores.length;
  const keep = new Uint8Array(n);
  if (k >= n) return keep.fill(1);
  if (k <= 0) return keep;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => key(scores[b]) - key(scores[a]) || a - b);
  for (let r = 0; r < k; r++) keep[order[r] ?? 0] = 1;
  return keep;
}
