/**
 * The lean attention core for a plain step of one new token per row (decode), used by the
 * all-variant dense graph in place of the general core whenever the runner says the step is one
 * (variant code `plainDecode`). With T = 1 the layout work of the general core disappears: the
 * query heads of a KV head are already contiguous, so grouping them is a Reshape (no Transpose),
 * the scores against the past add the past bias by broadcasting (no 5-D views), the new token
 * always sees itself (no new-token mask), and the attended rows are already in head order
 * (no Transpose back). About 18 nodes per layer instead of 25; the arithmetic is the same
 * (the same products and softmax; the past's scores with the operands swapped and the value
 * product as one row per query head, see below), so results agree with the general core to
 * float rounding.
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
  const softcap = (s: string): string => (cap === null ? s : b.op('Mul', [b.op('Tanh', [b.op('Mul', [s, b.scalarF32(1 / cap)])]), b.scalarF32(cap)]));
  const scale = attr.float(spec.attentionScale);
  // The past's scores as K [C, D] x q^T [D, G]: the cache is the streamed operand and the G query
  // columns the packed one. q [G, D] x K^T [D, C] made the GEMM pack (copy) the whole cache
  // every step: 1.4-1.5x slower for the scores at 2K-32K positions (a microbenchmark). G one-row
  // products q_g x K^T (as for the values below) were 2.1x slower at 16K positions in the model.
  const qT = b.op('Transpose', [q], { perm: attr.ints([0, 1, 3, 2]) }); // [B, KV, D, G]
  const sPastT = b.op('FusedMatMul', [v.pastK, qT], { transA: attr.int(0), transB: attr.int(0), alpha: scale }, 'com.microsoft'); // [B, KV, C, G]
  const sPast = b.op('Add', [softcap(b.op('Transpose', [sPastT], { perm: attr.ints([0, 1, 3, 2]) })), v.pastBias]); // [B, KV, G, C]
  const sSelf = softcap(b.op('FusedMatMul', [q, v.kNew], { transA: attr.int(0), transB: attr.int(1), alpha: scale }, 'com.microsoft')); // [B, KV, G, 1]
  const probs = b.op('Softmax', [b.op('Concat', [sPast, sSelf], { axis: attr.int(-1) })], { axis: attr.int(-1) }); // [B, KV, G, C+1]
  // Each query head's probabilities as a row of its own ([B, KV, G, 1, C+1]), so the product with
  // the past values runs as G one-row products (onnxruntime's GEMV, which streams V) instead of one
  // G-row GEMM that packs (copies) all of V every step: 1.1-1.8x faster for that product from 64
  // to 16K positions and at batch 1 to 32 (a microbenchmark, the 135m shapes).
  const rows = b.op('Unsqueeze', [probs, b.int64s([3])]);
  const one = b.int64s([2]);
  const lastAxis = b.int64s([-1]);
  const pPast = b.op('Slice', [rows, b.int64s([0]), lastAxis, lastAxis]); // every column but the last
  const pNew = b.op('Slice', [rows, lastAxis, b.int64s([Number.MAX_SAFE_INTEGER]), lastAxis]);
  const past = b.op('MatMul', [pPast, b.op('Unsqueeze', [v.pastV, one])]); // [B, KV, G, 1, C] x [B, KV, 1, C, D]
  const self = b.op('Mul', [pNew, b.op('Unsqueeze', [v.vNew, one])]); // [B, KV, G, 1, 1] x [B, KV, 1, 1, D]
  const out = b.op('Add', [past, self]); // [B, KV, G, 1, D]
  return b.op('Reshape', [out, b.int64s([-1, H * D])]);
}
