/**
 * The weight side of a graph under construction: initializers added once from
 * the stored (external) tensors, and linear layers as Gemm (fp32) or
 * MatMulNBits (int8/int4/int2). Shared by the dense decoder and the MoE graphs.
 */
import { attr, type ExternalDataFile, type GraphBuilder, storeTensor, type StoredTensor } from '../onnx/graph-builder.js';
import { quantizeBlockwise, type QuantBits } from './quantize.js';

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
  /** The initializer's name, added to the graph on first use. (Plain functions, not methods: callers destructure them.) */
  readonly w: (key: string) => string;
  /** x [M, K] -> [M, N] through the stored linear `key`. */
  readonly linear: (x: string, key: string) => string;
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

/**
 * Writes tensors into an external data file and records them: float32 tensors
 * as they are, linear layers as fp32 or block-quantized MatMulNBits weights.
 */
export class WeightWriter {
  readonly tensors = new Map<string, StoredTensor>();
  readonly linears = new Map<string, StoredLinear>();

  constructor(
    private readonly file: ExternalDataFile,
    private readonly weightDtype: 'fp32' | 'int8' | 'int4',
    private readonly quantBlockSize: number,
  ) {}

  f32(key: string, dims: readonly number[], data: Float32Array): void {
    this.tensors.set(key, storeTensor(this.file, 'float32', dims, data));
  }

  /** W [n, k] (Hugging Face's [out, in]) under `key`. */
  linear(key: string, data: Float32Array, n: number, k: number): void {
    if (this.weightDtype === 'fp32') {
      this.f32(key, [n, k], data);
      this.linears.set(key, { kind: 'fp32', weight: key, n, k });
      return;
    }
    const bits: QuantBits = this.weightDtype === 'int8' ? 8 : 4;
    const q = quantizeBlockwise(data, n, k, bits, this.quantBlockSize);
    this.tensors.set(`${key}.codes`, storeTensor(this.file, 'uint8', [n, q.blocksPerRow, (q.blockSize * bits) / 8], q.codes));
    this.tensors.set(`${key}.scales`, storeTensor(this.file, 'float32', [n * q.blocksPerRow], q.scales));
    this.linears.set(key, { kind: 'quant', codes: `${key}.codes`, scales: `${key}.scales`, n, k, bits, blockSize: q.blockSize });
  }
}

/** Row-major matrices stacked along rows (fused q/k/v, gate/up): one array, the parts in order. */
export function concatRows(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
