import type { SamplingScratch } from './scratch.js';
import { expNonPositive } from './fast-exp.js';
import { selectTop } from './selection.js';
import { addToBucket, resetBuckets, topPCut } from './top-p.js';

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

/** Whether `p` keeps every token (no top-k below the vocabulary, no top-p below 1, no min-p): temperature alone. */
export function untruncated(p: TruncationParams, vocabSize: number): boolean {
  return !(p.topK > 0 && p.topK < vocabSize) && !(p.topP < 1) && !(p.minP > 0);
}

/**
 * Temperature, then top-k, top-p, min-p over scratch.work (vLLM's order).
 * On return scratch.ids[0, n) holds the surviving ids and scratch.probs[id]
 * their weight relative to the most likely token, exp((l - max) / T); returns n
 * (always >= 1: the most likely token survives every step).
 *
 * Nothing is sorted: top-k is a quickselect; top-p is a bucketed, weighted
 * quickselect (see top-p.ts; the kept set is exactly the smallest best-first
 * prefix reaching p, ties by lowest id); min-p is a threshold,
 * since p_i >= minP * p_max is exp((l_i - max) / T) >= minP, unaffected by the
 * renormalizations before it.
 */
export function truncate(p: TruncationParams, scratch: SamplingScratch): number {
  const { work, ids, probs, kernel } = scratch;
  const max = kernel.max();
  if (!(max > -Infinity)) throw new Error('cannot sample: every token has logit -Infinity (all banned or masked)');

  const invT = 1 / p.temperature;
  const bucketed = p.topP < 1;
  if (bucketed) resetBuckets(scratch);
  let n = 0;
  let total = 0;
  if (p.topK > 0 && p.topK < work.length) {
    for (let i = 0; i < work.length; i++) if ((work[i] ?? -Infinity) > -Infinity) ids[n++] = i;
    if (p.topK < n) {
      selectTop(ids, 0, n, p.topK, work);
      n = p.topK;
    }
    for (let j = 0; j < n; j++) {
      const id = ids[j] ?? 0;
      const x = ((work[id] ?? 0) - max) * invT;
      const e = expNonPositive(x);
      probs[id] = e;
      total += e;
      if (bucketed) addToBucket(scratch, id, x, e);
    }
  } else {
    // Every token's weight in one vectorized pass (softmax-kernel.ts).
    const kernelTotal = kernel.expWeights(max, p.temperature);
    const weights = kernel.weights;
    const nucleus = bucketed ? nucleusCandidates(scratch, p.topP * kernelTotal) : 0;
    if (nucleus > 0) {
      n = nucleus;
      total = kernelTotal;
      for (let j = 0; j < n; j++) {
        const id = ids[j] ?? 0;
        addToBucket(scratch, id, ((work[id] ?? 0) - max) * invT, probs[id] ?? 0);
      }
    } else {
      // One direct pass over every token, no indirection.
      for (let i = 0; i < work.length; i++) {
        const l = work[i] ?? -Infinity;
        if (l > -Infinity) {
          ids[n++] = i;
          const x = (l - max) * invT;
          const e = weights[i] ?? 0;
          probs[i] = e;
          total += e;
          if (bucketed) addToBucket(scratch, i, x, e);
        }
      }
    }
  }

  if (bucketed) n = topPCut(scratch, n, p.topP * total);
  if (p.minP > 0) n = keepAtLeast(ids, n, probs, p.minP);
  return n;
}

/** Weight relative to the most likely token (logit within 6.9 T of the largest) above which the nucleus is first sought. */
const NUCLEUS_FLOOR = 1e-3;

/**
 * Top-p's candidates without a pass of JavaScript work per token: lists in ids (ascending) the
 * tokens whose kernel weight is at least NUCLEUS_FLOOR, with their probs. When their weight reaches
 * `target`, the best-first prefix top-p keeps lies among them (every other token weighs less than
 * each of them), so the cut over them equals the cut over the whole vocabulary; returns their
 * count. Returns 0 when they fall short (a flat tail holds the nucleus): the caller lists every token.
 */
function nucleusCandidates(scratch: SamplingScratch, target: number): number {
  const { ids, probs } = scratch;
  const weights = scratch.kernel.weights;
  let n = 0;
  let sum = 0;
  for (let i = 0; i < weights.length; i++) {
    const e = weights[i] ?? 0;
    if (e >= NUCLEUS_FLOOR) {
      ids[n++] = i;
      probs[i] = e;
      sum += e;
    }
  }
  return sum >= target ? n : 0;
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
