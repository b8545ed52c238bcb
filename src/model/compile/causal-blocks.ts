/**
 * The plain attention core for a prompt chunk, by query blocks: the chunk's T queries are cut
 * into CAUSAL_BLOCKS row blocks, and block i attends the past and only the new keys up to its
 * own last row. The general core scores every query against all T new keys and masks the
 * upper triangle away; here that triangle is not computed (nor added to, soft-maxed, copied or
 * multiplied): with 4 blocks the new-key work is 10/16 of the dense core's. The skipped
 * entries are exactly the ones new_bias blocks (a new token never sees a later one), so
 * the probabilities are the same; sums skip only zero terms.
 *
 * Used for plain steps of at least CAUSAL_BLOCKS_MIN_T tokens (an If in the general core);
 * statistics and Quest steps keep the dense core (their outputs cover every key).
 */
import { attr, type GraphBuilder } from '../onnx/graph-builder.js';
import type { ModelSpec } from '../spec.js';

export const CAUSAL_BLOCKS = 4;
/** Shorter chunks keep the dense core: their triangle is small and blocks cost nodes. */
export const CAUSAL_BLOCKS_MIN_T = 64;

export interface CausalBlockValues {
  /** [B, KV, G*T, D] queries grouped under their KV head (head-major rows g*T + t). */
  readonly qGrouped: string;
  /** [B, KV, C, D] past keys and values (float32). */
  readonly pastK: string;
  readonly pastV: string;
  /** [B, 1|KV, 1|T, C] the past bias. */
  readonly pastBias: string;
  /** [B, KV, T, D] the new keys and values. */
  readonly kNew: string;
  readonly vNew: string;
  /** [B, 1, 1, T, T] new_bias, and the layer's own window bias of the same shape (or null). */
  readonly newBias5: string;
  readonly windowBias: string | null;
  /** int64 [1]: T. */
  readonly tOnly: string;
}

/** Builds the blocked core in `b`; returns the attended values [B, KV, G*T, D]. */
export function causalBlocksCore(b: GraphBuilder, spec: ModelSpec, v: CausalBlockValues): string {
  const G = spec.numHeads / spec.numKvHeads;
  const D = spec.headDim;
  const cap = spec.attnLogitSoftcap;
  const scoresT = (q: string, k: string): string => {
    const s = b.op('FusedMatMul', [q, k], { transA: attr.int(0), transB: attr.int(1), alpha: attr.float(spec.attentionScale) }, 'com.microsoft');
    return cap === null ? s : b.op('Mul', [b.op('Tanh', [b.op('Mul', [s, b.scalarF32(1 / cap)])]), b.scalarF32(cap)]);
  };
  const i64 = (values: number[]): string => b.int64s(values);
  const q5 = b.op('Reshape', [v.qGrouped, b.op('Concat', [i64([0, 0, G]), v.tOnly, i64([D])], { axis: attr.int(0) })]); // [B, KV, G, T, D]
  const bias5 = b.op('Unsqueeze', [v.pastBias, i64([2])]); // [B, 1|KV, 1, 1|T, C]
  const biasRows = b.op('Shape', [v.pastBias], { start: attr.int(2), end: attr.int(3) }); // 1 or T
  const pastLen = b.op('Shape', [v.pastK], { start: attr.int(2), end: attr.int(3) });
  // Row bounds b_i = floor(i T / blocks).
  const bound = (i: number): string => (i === 0 ? i64([0]) : b.op('Div', [b.op('Mul', [v.tOnly, i64([i])]), i64([CAUSAL_BLOCKS])]));
  const bounds = Array.from({ length: CAUSAL_BLOCKS + 1 }, (_, i) => (i === CAUSAL_BLOCKS ? v.tOnly : bound(i)));
  const parts: string[] = [];
  for (let i = 0; i < CAUSAL_BLOCKS; i++) {
    const r0 = bounds[i] ?? i64([0]);
    const r1 = bounds[i + 1] ?? v.tOnly;
    const rows = b.op('Sub', [r1, r0]);
    const slice = (x: string, starts: string, ends: string, axes: number[]): string => b.op('Slice', [x, starts, ends, i64(axes)]);
    const qi = b.op('Reshape', [slice(q5, r0, r1, [3]), i64([0, 0, -1, D])]); // [B, KV, G*Ti, D]
    const scores5 = b.op('Concat', [i64([0, 0, G]), rows, i64([-1])], { axis: attr.int(0) });
    // The past bias has one row for every query or T rows: block i's rows, or its only row.
    const pbRows = slice(bias5, b.op('Min', [r0, b.op('Sub', [biasRows, i64([1])])]), b.op('Min', [r1, biasRows]), [3]);
    const sPast = b.op('Add', [b.op('Reshape', [scoresT(qi, v.pastK), scores5]), pbRows]); // [B, KV, G, Ti, C]
    // The last block sees every new key: no copy.
    const last = i === CAUSAL_BLOCKS - 1;
    const kSeen = last ? v.kNew : slice(v.kNew, i64([0]), r1, [2]);
    const vSeen = last ? v.vNew : slice(v.vNew, i64([0]), r1, [2]);
    const triangle = (bias: string): string =>
      b.op('Slice', [bias, b.op('Concat', [r0, i64([0])], { axis: attr.int(0) }), b.op('Concat', [r1, r1], { axis: attr.int(0) }), i64([3, 4])]);
    let sNew = b.op('Add', [b.op('Reshape', [scoresT(qi, kSeen), scores5]), triangle(v.newBias5)]); // [B, KV, G, Ti, r1]
    if (v.windowBias !== null) sNew = b.op('Add', [sNew, triangle(v.windowBias)]);
    const probs = b.op('Softmax', [b.op('Concat', [sPast, sNew], { axis: attr.int(-1) })], { axis: attr.int(-1) });
    const [pPast, pNew] = b.node(
      'Split',
      [probs, b.op('Concat', [pastLen, r1], { axis: attr.int(0) })],
      { axis: attr.int(-1) },
      {
        outputs: [`cbp_${i}_${b.name}`, `cbn_${i}_${b.name}`],
      },
    );
    if (pPast === undefined || pNew === undefined) throw new Error('unreachable');
    const flat = (p: string, width: string): string => b.op('Reshape', [p, b.op('Concat', [i64([0, 0, -1]), width], { axis: attr.int(0) })]);
    const attended = b.op('Add', [b.op('MatMul', [flat(pPast, pastLen), v.pastV]), b.op('MatMul', [flat(pNew, r1), vSeen])]); // [B, KV, G*Ti, D]
    parts.push(b.op('Reshape', [attended, b.op('Concat', [i64([0, 0, G]), rows, i64([D])], { axis: attr.int(0) })]));
  }
  return b.op('Reshape', [b.op('Concat', parts, { axis: attr.int(3) }), i64([0, 0, -1, D])]);
}
