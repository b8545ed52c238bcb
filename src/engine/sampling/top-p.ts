import type { SamplingScratch } from './scratch.js';
import { selectWeightedPrefix } from './selection.js';

/** Buckets are 1/16 nat of (max - logit) / T wide; the last one takes the whole tail. */
const BUCKETS_PER_NAT = 16;
export const TOP_P_BUCKETS = 1024;

/**
 * Top-p over ids[0, n): leaves in ids[0, cut) exactly the smallest best-first
 * prefix whose weight (scratch.probs) reaches target, unordered, and returns
 * cut.
 *
 * A weighted quickselect over a full 152k vocabulary costs a few passes of
 * compare-and-swap. Instead, one pass sums the weight per bucket of
 * (max - logit) / T, which is monotone in the logit, so the nucleus is every
 * bucket above a boundary bucket plus a best-first part of the boundary
 * bucket; only that bucket (typically a few hundred ids) needs the exact
 * weighted selection, which keeps the tie order (logit desc, id asc).
 */
export function topPCut(scratch: SamplingScratch, n: number, max: number, invT: number, target: number): number {
  const { work, ids, probs, bucketMass } = scratch;
  const scale = invT * BUCKETS_PER_NAT;
  const last = TOP_P_BUCKETS - 1;
  bucketMass.fill(0);
  for (let j = 0; j < n; j++) {
    const id = ids[j] ?? 0;
    const b = Math.min(last, Math.floor((max - (work[id] ?? 0)) * scale));
    bucketMass[b] = (bucketMass[b] ?? 0) + (probs[id] ?? 0);
  }

  let above = 0;
  let boundary = last;
  for (let b = 0; b < TOP_P_BUCKETS; b++) {
    const m = bucketMass[b] ?? 0;
    if (above + m >= target) {
      boundary = b;
      break;
    }
    above += m;
  }

  // Buckets before the boundary to the front, then the boundary bucket.
  let front = 0;
  for (let j = 0; j < n; j++) {
    const id = ids[j] ?? 0;
    if (Math.min(last, Math.floor((max - (work[id] ?? 0)) * scale)) < boundary) {
      ids[j] = ids[front] ?? 0;
      ids[front++] = id;
    }
  }
  let end = front;
  for (let j = front; j < n; j++) {
    const id = ids[j] ?? 0;
    if (Math.min(last, Math.floor((max - (work[id] ?? 0)) * scale)) === boundary) {
      ids[j] = ids[end] ?? 0;
      ids[end++] = id;
    }
  }
  if (end === front) return front;
  return selectWeightedPrefix(ids, front, end, work, probs, target - above);
}
