/**
 * The weight side of a graph under construction: initializers added once from
 * the stored (external) tensors, and linear layers as Gemm (fp32) or
 * MatMulNBits (int8/int4/int2). Shared by the dense decoder and the MoE graphs.
 */
import { attr, type ExternalDataFile, type GraphBuilder, storeTensor, type StoredTensor } from '../onnx/graph-builder.js';
import { quantizeBlockwise, type QuantBits } from './quantize.js';
import { quantizePerChannel, w8a8Linear } from './w8a8.js';

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
    }
  | {
      /** w8a8: int8 codes per output channel, [K, N], for the integer GEMM (w8a8.ts). */
      readonly kind: 'channel';
      readonly codes: string;
      readonly scales: string;
      readonly n: number;
      readonly k: number;
    };

export interface GraphWeights {
  /** The initializer's name, added to the graph on first use. (Plain functions, not methods: callers destructure them.) */
  readonly w: (key: string) => string;
  /** x [M, K] -> [M, N] through the stored linear `key`. */
  readonly linear: (x: string, key: string) => string;
  /** Rows `ids` (int64, any shape) of the stored table `key` (WeightWriter.table), as float32 [ids.size, width]. */
  readonly rows: (ids: string, key: string, width: number) => string;
}

/** Names of a row-quantized table's initializers (WeightWriter.table). */
const tableCodes = (key: string): string => `${key}.row_codes`;
const tableScales = (key: string): string => `${key}.row_scales`;

/**
 * The block size (a power of two from `preferred` down to 16, GatherBlockQuantized's smallest)
 * that divides `k`, so a row needs no padding; null when none does.
 */
export function tableBlockSize(k: number, preferred: number): number | null {
  for (let b = preferred; b >= 16; b /= 2) if (k % b === 0) return b;
  return null;
}

export function graphWeights(
  g: GraphBuilder,
  tensors: ReadonlyMap<string, StoredTensor>,
  linears: ReadonlyMap<string, StoredLinear>,
  accuracyLevel: number,
): GraphWeights {
  const added = new Set<string>();
  let zeroPoint: string | null = null;
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
    if (lin.kind === 'channel') {
      zeroPoint ??= g.constant('uint8', [], Uint8Array.of(128), 'zp128');
      return w8a8Linear(g, x, w(lin.codes), w(lin.scales), zeroPoint);
    }
    return g.op(
      'MatMulNBits',
      [x, w(lin.codes), w(lin.scales)],
      { K: attr.int(lin.k), N: attr.int(lin.n), bits: attr.int(lin.bits), block_size: attr.int(lin.blockSize), accuracy_level: attr.int(accuracyLevel) },
      'com.microsoft',
    );
  };
  const rows = (ids: string, key: string, width: number): string => {
    const shape = g.int64s([-1, width]);
    if (tensors.has(key)) return g.op('Reshape', [g.op('Gather', [w(key), ids], { axis: attr.int(0) }), shape]);
    const codes = tensors.get(tableCodes(key));
    const blockSize = codes?.dims[2];
    if (blockSize === undefined) throw new Error(`internal: table ${key} was not stored`);
    const picked = g.op(
      'GatherBlockQuantized',
      [w(tableCodes(key)), ids, w(tableScales(key))],
      { gather_axis: attr.int(0), quantize_axis: attr.int(2), block_size: attr.int(blockSize), bits: attr.int(8) },
      'com.microsoft',
    );
    return g.op('Reshape', [picked, shape]);
  };
  return { w, linear, rows };
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
    private readonly weightDtype: 'fp32' | 'int8' | 'int4' | 'w8a8',
    private readonly quantBlockSize: number,
    /** w8a8 only: the weights' range (weightRangeBits). */
    private readonly channelBits: 7 | 8 = 8,
  ) {}

  f32(key: string, dims: readonly number[], data: Float32Array): void {
    this.tensors.set(key, storeTensor(this.file, 'float32', dims, data));
  }

  /**
   * W [n, k] (Hugging Face's [out, in]) under `key`. `fewRows`: the layer only ever sees a few rows
   * at a time (the vocabulary projection: one row per sequence), where w8a8's integer GEMM gains
   * nothing and its per-row quantization costs; w8a8 stores such a layer as int8 blocks.
   */
  linear(key: string, data: Float32Array, n: number, k: number, fewRows = false): void {
    if (this.weightDtype === 'fp32') {
      this.f32(key, [n, k], data);
      this.linears.set(key, { kind: 'fp32', weight: key, n, k });
      return;
    }
    if (this.weightDtype === 'w8a8' && !fewRows) {
      const q = quantizePerChannel(data, n, k, this.channelBits);
      this.tensors.set(`${key}.codes`, storeTensor(this.file, 'int8', [k, n], q.codes));
      this.tensors.set(`${key}.scales`, storeTensor(this.file, 'float32', [n], q.scales));
      this.linears.set(key, { kind: 'channel', codes: `${key}.codes`, scales: `${key}.scales`, n, k });
      return;
    }
    const bits: QuantBits = this.weightDtype === 'int4' ? 4 : 8;
    const q = quantizeBlockwise(data, n, k, bits, this.quantBlockSize);
    this.tensors.set(`${key}.codes`, storeTensor(this.file, 'uint8', [n, q.blocksPerRow, (q.blockSize * bits) / 8], q.codes));
    this.tensors.set(`${key}.scales`, storeTensor(this.file, 'float32', [n * q.blocksPerRow], q.scales));
    this.linears.set(key, { kind: 'quant', codes: `${key}.codes`, scales: `${key}.scales`, n, k, bits, blockSize: q.blockSize });
  }

  /**
   * A table read by rows, T [n, k] (the token embedding): float32 in an fp32 graph; in a quantized
   * graph, 8-bit codes per block of a row with a float scale (onnxruntime's GatherBlockQuantized
   * layout, [n, blocks, blockSize] codes and [n, blocks, 1] scales, the implicit zero point 128),
   * also for int4 graphs: a gathered row costs one row's read whatever its width, so the table's
   * bits are memory, not speed, and 8 bits keep the input error small. float32 when no block size
   * of 16 or more divides k.
   */
  table(key: string, data: Float32Array, n: number, k: number): void {
    const blockSize = this.weightDtype === 'fp32' ? null : tableBlockSize(k, this.quantBlockSize);
    if (blockSize === null) {
      this.f32(key, [n, k], data);
      return;
    }
    const q = quantizeBlockwise(data, n, k, 8, blockSize);
    this.tensors.set(tableCodes(key), storeTensor(this.file, 'uint8', [n, q.blocksPerRow, blockSize], q.codes));
    this.tensors.set(tableScales(key), storeTensor(this.file, 'float32', [n, q.blocksPerRow, 1], q.scales));
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
