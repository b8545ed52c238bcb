/**
 * The weight side of a graph under construction: initializers added once from
 * the stored (external) tensors, and linear layers as Gemm (fp32) or
 * MatMulNBits (int8/int4/int2). Shared by the dense decoder and the MoE graphs.
 */
import { attr, type GraphBuilder, type StoredTensor } from '../onnx/graph-builder.js';

export type StoredLinear =
  | { readonly kind: 'fp32'; readonly weight: string; readonly n: number; readonly k: number }
  | {
      readonly kind: 'quant';
      readonly codes: string;
      readonly scales: string;
      readonly n: number;
      readonly k: number;
      readonly bits: number;
      readonly blockSize: number;
    };

export interface GraphWeights {
  /** The initializer's name, added to the graph on first use. */
  w(key: string): string;
  /** x [M, K] -> [M, N] through the stored linear `key`. */
  linear(x: string, key: string): string;
}

export function graphWeights(
  g: GraphBuilder,
  tensors: ReadonlyMap<string, StoredTensor>,
  linears: ReadonlyMap<string, StoredLinear>,
  accuracyLevel: number,
): GraphWeights {
  const added = new Set<string>();
  const w = (key: string): string => {
    const t = tensors.get(key);
    if (!t) throw new Error(`internal: weight ${key} was not stored`);
    if (!added.has(key)) {
      g.external(key, t);
      added.add(key);
    }
    return key;
  };
  const linear = (x: string, key: string): string => {
    const lin = linears.get(key);
    if (!lin) throw new Error(`internal: linear ${key} was not stored`);
    if (lin.kind === 'fp32') return g.op('Gemm', [x, w(lin.weight)], { transB: attr.int(1) });
    return g.op(
      'MatMulNBits',
      [x, w(lin.codes), w(lin.scales)],
      { K: attr.int(lin.k), N: attr.int(lin.n), bits: attr.int(lin.bits), block_size: attr.int(lin.blockSize), accuracy_level: attr.int(accuracyLevel) },
      'com.microsoft',
    );
  };
  return { w, linear };
}
