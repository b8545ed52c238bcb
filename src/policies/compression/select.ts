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
 * while the kept tokens exceed `budget`: the percentile rule of Selective
 * Context with the percentile taken over tokens rather than units.
 * - 'at-most': the kept total ends at most `budget` and above `budget` minus
 *   the last dropped unit's length (a hard cap, for fitting a window);
 * - 'nearest': the unit that straddles the budget is dropped only when that
 *   lands closer to it, so the kept total is within half a unit either way
 *   (a ratio is met without a systematic undershoot when units are long).
 */
export function dropLowest(scores: ArrayLike<number>, lengths: ArrayLike<number>, budget: number, fit: 'at-most' | 'nearest' = 'at-most'): Uint8Array {
  const n = scores.length;
  const keep = new Uint8Array(n).fill(1);
  let kept = 0;
  for (let i = 0; i < n; i++) kept += lengths[i] ?? 0;
  if (kept <= budget) return keep;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => key(scores[a]) - key(scores[b]) || a - b);
  for (const u of order) {
    if (kept <= budget) break;
    const len = lengths[u] ?? 0;
    if (fit === 'nearest' && kept - len < budget && budget - (kept - len) > kept - budget) break;
    keep[u] = 0;
    kept -= len;
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
