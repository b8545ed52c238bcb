import type { SamplingScratch } from './scratch.js';
import { selectWeightedPrefix } from './selection.js';

/** Buckets are 1/16 nat of (max - logit) / T wide; the last one takes the whole tail. */
const BUCKETS_PER_NAT = 16;
export const TOP_P_BUCKETS = 1024;
const LAST = TOP_P_BUCKETS - 1;

/**
 * Top-p in two steps, so a 152k vocabulary costs one extra cheap pass whether
 * the nucleus holds 3 tokens or 50,000:
 * 1. while weights are computed, addToBucket() files each token by
 *    (max - logit) / T, monotone in the logit, and sums weight per bucket;
 * 2. topPCut() finds the bucket where the cumulative weight reaches the
 *    target: every bucket above it is kept whole, and only that boundary
 *    bucket (typically a few hundred ids) goes through the exact weighted
 *    selection, which keeps the tie order (logit desc, id asc).
 * The caller must zero the masses (resetBuckets) before the weighing pass.
 */
export function resetBuckets(scratch: SamplingScratch): void {
  scratch.bucketMass.fill(0);
}

/** x = (logit - max) / T <= 0, e = exp(x). */
export function addToBucket(scratch: SamplingScratch, id: number, x: number, e: number): void {
  const b = Math.min(LAST, Math.floor(-x * BUCKETS_PER_NAT));
  scratch.bucketOf[id] = b;
  scratch.bucketMass[b] = (scratch.bucketMass[b] ?? 0) + e;
}

/**
 * Leaves in ids[0, cut) exactly the smallest best-first prefix of ids[0, n)
 * whose weight (scratch.probs) reaches target, unordered; returns cut.
 */
export function topPCut(scratch: SamplingScratch, n: number, target: number): number {
  const { work, ids, probs, bucketOf, bucketMass } = scratch;
  let above = 0;
  let boundary = LAST;
  for (let b = 0; b < TOP_P_BUCKETS; b++) {
    const m = bucketMass[b] ?? 0;
    if (above + m >= target) {
      boundary = b;
      break;
    }
    above += m;
  }

  // Three-way partition: buckets above the boundary, the boundary bucket, the rest.
  let front = 0;
  let end = 0;
  for (let j = 0; j < n; j++) {
    const id = ids[j] ?? 0;
    const b = bucketOf[id] ?? LAST;
    if (b > boundary) continue;
    ids[j] = ids[end] ?? 0;
    if (b < boundary) {
      ids[end] = ids[front] ?? 0;
      ids[front++] = id;
    } else {
      ids[end] = id;
    }
    end++;
  }
  if (end === front) return front;
  return selectWeightedPrefix(ids, front, end, work, probs, target - above);
}
