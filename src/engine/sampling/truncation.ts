import type { SamplingScratch } from './scratch.js';
import { selectTop, sortRange } from './selection.js';

export interface TruncationParams {
  /** > 0; greedy is decided before truncation. */
  readonly temperature: number;
  /** 0 or less disables. */
  readonly topK: number;
  /** (0, 1]; 1 disables. */
  readonly topP: number;
  /** [0, 1]; 0 disables. */
  readonly minP: number;
}

/** Size of the first sorted block top-p examines; later blocks grow 4x. */
const TOP_P_FIRST_BLOCK = 32;

/**
 * Temperature, then top-k, top-p, min-p over scratch.work (vLLM's order).
 * On return scratch.ids[0, n) holds the surviving ids and scratch.probs[id]
 * their weight relative to the most likely token, exp((l - max) / T); returns n
 * (always >= 1: the most likely token survives every step).
 *
 * Full-vocab sorting is avoided: top-k is a quickselect; top-p sorts only as
 * many of the best tokens as it needs to reach the mass, selecting them in
 * growing blocks; min-p is a threshold, since p_i >= minP * p_max is
 * exp((l_i - max) / T) >= minP, unaffected by the renormalizations before it.
 */
export function truncate(p: TruncationParams, scratch: SamplingScratch): number {
  const { work, ids, probs } = scratch;
  let max = -Infinity;
  let n = 0;
  for (let i = 0; i < work.length; i++) {
    const l = work[i] ?? -Infinity;
    if (l > -Infinity) {
      ids[n++] = i;
      if (l > max) max = l;
    }
  }
  if (n === 0) throw new Error('cannot sample: every token has logit -Infinity (all banned or masked)');

  if (p.topK > 0 && p.topK < n) {
    selectTop(ids, 0, n, p.topK, work);
    n = p.topK;
  }

  const invT = 1 / p.temperature;
  let total = 0;
  for (let j = 0; j < n; j++) {
    const id = ids[j] ?? 0;
    const e = Math.exp(((work[id] ?? 0) - max) * invT);
    probs[id] = e;
    total += e;
  }

  if (p.topP < 1) n = topPPrefix(scratch, n, p.topP * total);
  if (p.minP > 0) n = keepAtLeast(ids, n, probs, p.minP);
  return n;
}

/**
 * Length of the smallest best-first prefix of ids[0, n) whose weight reaches
 * target; leaves that prefix sorted best first.
 */
function topPPrefix(scratch: SamplingScratch, n: number, target: number): number {
  const { work, ids, probs } = scratch;
  let sorted = 0;
  let cum = 0;
  let block = TOP_P_FIRST_BLOCK;
  while (sorted < n) {
    const end = Math.min(n, sorted + block);
    // Everything in ids[sorted, n) ranks below ids[0, sorted), so selecting and
    // sorting the next block extends the sorted prefix.
    selectTop(ids, sorted, n, end - sorted, work);
    sortRange(ids, sorted, end, work);
    for (let j = sorted; j < end; j++) {
      cum += probs[ids[j] ?? 0] ?? 0;
      if (cum >= target) return j + 1;
    }
    sorted = end;
    block *= 4;
  }
  // Only reachable when rounding leaves cum a hair under target (topP ~ 1).
  return n;
}

/** Stable in-place filter of ids[0, n) to weight >= threshold. */
function keepAtLeast(ids: Int32Array, n: number, probs: Float64Array, threshold: number): number {
  let kept = 0;
  for (let j = 0; j < n; j++) {
    const id = ids[j] ?? 0;
    if ((probs[id] ?? 0) >= threshold) ids[kept++] = id;
  }
  return kept;
}

/**
 * Draws from ids[0, n) in proportion to probs[id] (renormalized here), using
 * one uniform u in [0, 1). Zero-weight ids are never chosen.
 */
export function drawCategorical(ids: Int32Array, n: number, probs: Float64Array, u: number): number {
  let z = 0;
  for (let j = 0; j < n; j++) z += probs[ids[j] ?? 0] ?? 0;
  let r = u * z;
  let lastPositive = ids[0] ?? 0;
  for (let j = 0; j < n; j++) {
    const id = ids[j] ?? 0;
    const w = probs[id] ?? 0;
    if (w <= 0) continue;
    r -= w;
    if (r < 0) return id;
    lastPositive = id;
  }
  // Summation order differs between the two loops; absorb the last ulp.
  return lastPositive;
}
