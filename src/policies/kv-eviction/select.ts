/**
 * The shared selector (kvpress's ScorerPress.compress, written once): per KV
 * head keep the protected sinks and recent window, then the highest scores,
 * up to the budget. Every head keeps the same number of entries so the cache
 * stays rectangular.
 */
import { PolicyError } from '../errors.js';
import type { Protect } from '../method-types.js';
import type { KeepPlan, LayerKvView } from '../types.js';

export type KeepView = Pick<LayerKvView, 'numKvHeads' | 'length' | 'positions'>;

/**
 * Keeps `keep` entries per head (all of them when keep >= length). The budget is
 * a hard cap: protection yields to it, sinks first, then the newest entries.
 * Entries must be stored in position order (compaction keeps indices ascending),
 * so "first by position" is "first by index"; this is checked.
 * Ties in score go to the newer entry. NaN scores rank lowest.
 */
export function planKeep(scores: Float32Array, view: KeepView, keep: number, protect: Protect): KeepPlan {
  const { numKvHeads, length: n, positions } = view;
  if (!Number.isInteger(keep) || keep < 0) {
    throw new PolicyError(`planKeep: keep must be a resolved entry count (integer >= 0), got ${keep}; resolve ratios with resolveBudget first`);
  }
  if (scores.length !== numKvHeads * n) {
    throw new PolicyError(`planKeep: scores has ${scores.length} values, expected numKvHeads * length = ${numKvHeads} * ${n}`);
  }
  if (positions.length !== numKvHeads * n) {
    throw new PolicyError(`planKeep: positions has ${positions.length} values, expected numKvHeads * length = ${numKvHeads} * ${n}`);
  }
  checkPositionOrder(positions, numKvHeads, n);
  const k = Math.min(keep, n);
  const sinks = Math.min(Math.max(0, protect.sinkTokens), k);
  const recent = Math.min(Math.max(0, protect.recentTokens), k - sinks);
  const free = k - sinks - recent;
  const mask = new Uint8Array(n);
  const scratch = new Float32Array(Math.max(0, n - sinks - recent));
  const plan: Int32Array[] = [];
  for (let h = 0; h < numKvHeads; h++) {
    mask.fill(0);
    mask.fill(1, 0, sinks);
    mask.fill(1, n - recent, n);
    markTopK(scores, h * n + sinks, n - sinks - recent, free, mask, sinks, scratch);
    const out = new Int32Array(k);
    let w = 0;
    for (let i = 0; i < n; i++) if (mask[i] === 1) out[w++] = i;
    plan.push(out);
  }
  return plan;
}

function checkPositionOrder(positions: Int32Array, numKvHeads: number, n: number): void {
  for (let h = 0; h < numKvHeads; h++) {
    const base = h * n;
    for (let i = 1; i < n; i++) {
      if ((positions[base + i] ?? 0) <= (positions[base + i - 1] ?? 0)) {
        throw new PolicyError(
          `planKeep: head ${h} entry ${i} has position ${positions[base + i]} after ${positions[base + i - 1]}; cache entries must be in ascending position order`,
        );
      }
    }
  }
}

/**
 * Sets mask[maskOffset + j] = 1 for the `m` largest of scores[offset + j],
 * j < count (ties to larger j, NaN lowest). `scratch` holds at least `count` values.
 */
export function markTopK(scores: Float32Array, offset: number, count: number, m: number, mask: Uint8Array, maskOffset: number, scratch: Float32Array): void {
  if (m <= 0 || count <= 0) return;
  if (m >= count) {
    mask.fill(1, maskOffset, maskOffset + count);
    return;
  }
  for (let j = 0; j < count; j++) {
    const v = scores[offset + j] ?? Number.NEGATIVE_INFINITY;
    scratch[j] = v === v ? v : Number.NEGATIVE_INFINITY;
  }
  const threshold = nthSmallest(scratch, count, count - m);
  let taken = 0;
  for (let j = 0; j < count; j++) {
    const v = scores[offset + j] ?? Number.NEGATIVE_INFINITY;
    if (v === v && v > threshold) {
      mask[maskOffset + j] = 1;
      taken++;
    }
  }
  for (let j = count - 1; j >= 0 && taken < m; j--) {
    const raw = scores[offset + j] ?? Number.NEGATIVE_INFINITY;
    const v = raw === raw ? raw : Number.NEGATIVE_INFINITY;
    if (v === threshold) {
      mask[maskOffset + j] = 1;
      taken++;
    }
  }
}

/** Value at ascending rank `p` of a[0..n), reordering `a` in place (3-way quickselect: equal runs stay linear). */
export function nthSmallest(a: Float32Array, n: number, p: number): number {
  let lo = 0;
  let hi = n - 1;
  for (;;) {
    if (lo >= hi) return a[lo] ?? Number.NaN;
    const mid = (lo + hi) >>> 1;
    const x = a[lo] ?? 0;
    const y = a[mid] ?? 0;
    const z = a[hi] ?? 0;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let lt = lo;
    let i = lo;
    let gt = hi;
    while (i <= gt) {
      const v = a[i] ?? 0;
      if (v < pivot) {
        a[i] = a[lt] ?? 0;
        a[lt] = v;
        lt++;
        i++;
      } else if (v > pivot) {
        a[i] = a[gt] ?? 0;
        a[gt] = v;
        gt--;
      } else {
        i++;
      }
    }
    if (p < lt) hi = lt - 1;
    else if (p > gt) lo = gt + 1;
    else return pivot;
  }
}
