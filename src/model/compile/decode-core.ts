/**
 * The lean attention core for a plain step of one new token per row (decode), used by the
 * all-variant dense graph in place of the general core whenever the runner says the step is one
 * (variant code `plainDecode`). With T = 1 the layout work of the general core disappears: the
 * query heads of a KV head are already contiguous, so grouping them is a Reshape (no Transpose),
 * the scores against the past add the past bias by broadcasting (no 5-D views), the new token
 * always sees itself (no new-token mask), and the attended rows are already in head order
 * (no Transpose back). 13 nodes per layer instead of about 25; the arithmetic is the same
 * (same products over the same operands, same softmax), so results agree with the general core
 * to float rounding.
 *
 * A fused kernel (onnxruntime's GroupQueryAttention, writing the new entry into the past buffer
 * in place) was measured first: no faster at 128 positions and half the speed at 1,500 (its
 * per-query-head loop re-reads the cache once per head of a group).
 */
import { attr, type GraphBuilder } from '../onnx/graph-builder.js';
import type { ModelSpec } from '../spec.js';

/** The layer values the decode core reads, all of the enclosing graph. */
export interface DecodeCoreValues {
  /** [B, 1, H * D] queries after RoPE. */
  readonly q: string;
  /** [B, KV, 1, D] the new token's key (after RoPE) and value. */
  readonly kNew: string;
  readonly vNew: string;
  /** [B, KV, C, D] float32 past keys and values. */
  readonly pastK: string;
  readonly pastV: string;
  /** [B, 1|KV, 1, C] the layer's past bias. */
  readonly pastBias: string;
}

/** Builds the core in `b`; returns the attended rows [B, H * D] (heads in order). */
export function decodeCore(b: GraphBuilder, spec: ModelSpec, v: DecodeCoreValues): string {
  const H = spec.numHeads;
  const KV = spec.numKvHeads;
  const D = spec.headDim;
  const cap = spec.attnLogitSoftcap;
  const q = b.op('Reshape', [v.q, b.int64s([0, KV, H / KV, D])]); // [B, KV, G, D]
  const scores = (k: string): string => {
    const s = b.op('FusedMatMul', [q, k], { transA: attr.int(0), transB: attr.int(1), alpha: attr.float(spec.attentionScale) }, 'com.microsoft');
    return cap === null ? s : b.op('Mul', [b.op('Tanh', [b.op('Mul', [s, b.scalarF32(1 / cap)])]), b.scalarF32(cap)]);
  };
  const sPast = b.op('Add', [scores(v.pastK), v.pastBias]); // [B, KV, G, C]
  const probs = b.op('Softmax', [b.op('Concat', [sPast, scores(v.kNew)], { axis: attr.int(-1) })], { axis: attr.int(-1) }); // [B, KV, G, C+1]
  const sizes = b.op('Concat', [b.op('Shape', [v.pastK], { start: attr.int(2), end: attr.int(3) }), b.int64s([1])], { axis: attr.int(0) });
  const [pPast, pNew] = b.node('Split', [probs, sizes], { axis: attr.int(-1) }, { outputs: [`dp_${b.name}`, `dn_${b.name}`] });
  if (pPast === undefined || pNew === undefined) throw new Error('unreachable');
  const out = b.op('Add', [b.op('MatMul', [pPast, v.pastV]), b.op('MatMul', [pNew, v.vNew])]); // [B, KV, G, D]
  return b.op('Reshape', [out, b.int64s([-1, H * D])]);
}
