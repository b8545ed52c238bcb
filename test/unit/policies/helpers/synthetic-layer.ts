/**
 * Hand-built and synthetic layer views for policy tests. Attention statistics
 * are computed for real (softmax of q.k / sqrt(d) with a causal mask) from
 * seeded random queries and keys, so methods see what a runtime would give them.
 */
import YAML from 'yaml';
import { parsePolicyFile, type Policy } from '../../../../src/policies/registry.js';
import type { KeepPlan, LayerKvView } from '../../../../src/policies/types.js';

/** mulberry32: small, seeded, good enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(next: () => number): number {
  const u = Math.max(next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
}

export function randomArray(n: number, next: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = gaussian(next) * scale;
  return a;
}

export interface ViewInit {
  readonly numKvHeads: number;
  readonly groupSize?: number;
  readonly headDim?: number;
  readonly length: number;
  readonly layer?: number;
  readonly numLayers?: number;
  readonly keys?: Float32Array;
  readonly positions?: Int32Array;
  readonly accumulatedAttention?: Float32Array | null;
  readonly windowAttention?: Float32Array | null;
  readonly window?: number;
  readonly lastQueryAttention?: Float32Array | null;
}

export function makeView(init: ViewInit): LayerKvView {
  const h = init.numKvHeads;
  const d = init.headDim ?? 4;
  const n = init.length;
  const positions = init.positions ?? Int32Array.from({ length: h * n }, (_, i) => i % n);
  return {
    layer: init.layer ?? 0,
    numLayers: init.numLayers ?? 1,
    numKvHeads: h,
    groupSize: init.groupSize ?? 1,
    headDim: d,
    length: n,
    positions,
    keys: init.keys ?? new Float32Array(n * h * d),
    values: new Float32Array(n * h * d),
    accumulatedAttention: init.accumulatedAttention ?? null,
    windowAttention: init.windowAttention ?? null,
    window: init.window ?? 0,
    lastQueryAttention: init.lastQueryAttention ?? null,
  };
}

export function policyOf(method: string, kind: string, params: Record<string, unknown>): Policy {
  return parsePolicyFile(YAML.stringify({ name: `test-${method}`, kind, method, params }), `<test ${method}>`);
}

/** Every plan row ascending, in range, and of one length. */
export function assertValidPlan(plan: KeepPlan, length: number, expectKept: number): string | null {
  for (let h = 0; h < plan.length; h++) {
    const row = plan[h];
    if (row === undefined) return `head ${h} missing`;
    if (row.length !== expectKept) return `head ${h} keeps ${row.length}, expected ${expectKept}`;
    for (let i = 0; i < row.length; i++) {
      const v = row[i] ?? -1;
      if (v < 0 || v >= length) return `head ${h} index ${v} out of range`;
      if (i > 0 && v <= (row[i - 1] ?? -1)) return `head ${h} not strictly ascending at ${i}`;
    }
  }
  return null;
}

/**
 * Softmax attention of queries [nq, numKvHeads * groupSize, d] over the cache
 * (keys [n, numKvHeads, d]), causal by position: [numKvHeads, groupSize, nq, n].
 * Key positions are per head [numKvHeads * n].
 */
export function attention(
  queries: Float32Array,
  queryPositions: Int32Array,
  keys: Float32Array,
  keyPositions: Int32Array,
  numKvHeads: number,
  groupSize: number,
  d: number,
): Float32Array {
  const nq = queryPositions.length;
  const n = keyPositions.length / numKvHeads;
  const out = new Float32Array(numKvHeads * groupSize * nq * n);
  const logits = new Float64Array(n);
  const scale = 1 / Math.sqrt(d);
  for (let h = 0; h < numKvHeads; h++) {
    for (let g = 0; g < groupSize; g++) {
      for (let i = 0; i < nq; i++) {
        const qBase = (i * numKvHeads * groupSize + h * groupSize + g) * d;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < n; j++) {
          if ((keyPositions[h * n + j] ?? 0) > (queryPositions[i] ?? 0)) {
            logits[j] = Number.NEGATIVE_INFINITY;
            continue;
          }
          let dot = 0;
          for (let c = 0; c < d; c++) dot += (queries[qBase + c] ?? 0) * (keys[(j * numKvHeads + h) * d + c] ?? 0);
          logits[j] = dot * scale;
          if (logits[j]! > max) max = logits[j]!;
        }
        let sum = 0;
        for (let j = 0; j < n; j++) {
          const e = logits[j] === Number.NEGATIVE_INFINITY ? 0 : Math.exp(logits[j]! - max);
          logits[j] = e;
          sum += e;
        }
        const base = ((h * groupSize + g) * nq + i) * n;
        for (let j = 0; j < n; j++) out[base + j] = sum > 0 ? logits[j]! / sum : 0;
      }
    }
  }
  return out;
}

/** Rows [numKvHeads, groupSize, nq, n] summed over group and queries: [numKvHeads * n]. */
export function sumRows(att: Float32Array, numKvHeads: number, groupSize: number, nq: number, n: number): Float32Array {
  const out = new Float32Array(numKvHeads * n);
  for (let h = 0; h < numKvHeads; h++) {
    for (let r = 0; r < groupSize * nq; r++) {
      const base = (h * groupSize * nq + r) * n;
      for (let j = 0; j < n; j++) out[h * n + j] = (out[h * n + j] ?? 0) + (att[base + j] ?? 0);
    }
  }
  return out;
}

/** Gathers per-head entries of a [n, numKvHeads, d] array by the plan. */
export function gatherEntries(src: Float32Array, numKvHeads: number, d: number, plan: KeepPlan): Float32Array {
  const kept = plan[0]?.length ?? 0;
  const out = new Float32Array(kept * numKvHeads * d);
  for (let h = 0; h < numKvHeads; h++) {
    const row = plan[h]!;
    for (let i = 0; i < kept; i++) {
      const j = row[i]!;
      out.set(src.subarray((j * numKvHeads + h) * d, (j * numKvHeads + h + 1) * d), (i * numKvHeads + h) * d);
    }
  }
  return out;
}

/** Gathers a per-head [numKvHeads * n] array by the plan. */
export function gatherPerHead<T extends Float32Array | Int32Array>(src: T, n: number, plan: KeepPlan, make: (len: number) => T): T {
  const kept = plan[0]?.length ?? 0;
  const out = make(plan.length * kept);
  for (let h = 0; h < plan.length; h++) {
    const row = plan[h]!;
    for (let i = 0; i < kept; i++) out[h * kept + i] = src[h * n + row[i]!]!;
  }
  return out;
}
