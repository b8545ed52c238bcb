/**
 * The `w8a8` weight dtype: int8 weights per output channel and int8 activations per token,
 * multiplied by onnxruntime's integer GEMM (MatMulInteger, uint8 x int8 -> int32), then scaled
 * back. Against `int8` (MatMulNBits, 64-weight blocks): the same bytes per weight and about the
 * same decode speed, but prefill runs on the integer GEMM's packed kernels (VNNI where the CPU has
 * it), about twice as fast at 512 tokens (quant-bench, engine-bench); the error is larger (one
 * scale per row of weights and per token of activations instead of per 64 values).
 *
 * Per token: a = round(x * 127 / max|x|) in [-127, 127], fed as uint8 with zero point 128 (the
 * uint8 x int8 kernel is onnxruntime's fast one; int8 x int8 and uint8 x uint8 ran 2-10x slower
 * here). Per output channel j: w_j = round(W_j * 127 / max|W_j|). y = (a . w_j) * max|x| * s_j with
 * s_j = max|W_j| / 127^2 stored.
 *
 * On x86 CPUs without VNNI the uint8 x int8 kernel sums pairs of products in 16 bits with
 * saturation (255 x 127 x 2 > 32767); onnxruntime's documented remedy is "reduce range": weights
 * on 7 bits (|w| <= 63), which `weightRangeBits` picks from the CPU's flags at compile time.
 */
import { readFileSync } from 'node:fs';
import { attr, type GraphBuilder } from '../onnx/graph-builder.js';

export interface ChannelQuantized {
  /** [k, n] codes (MatMulInteger's B layout: the transpose of Hugging Face's [out, in]). */
  readonly codes: Int8Array;
  /** [n] max|W_j| / (qmax x 127): a code's value in channel j, with the activations' 1/127 folded in. */
  readonly scales: Float32Array;
}

/** 8, or 7 where the CPU's integer dot product could saturate (x86 without VNNI). */
export function weightRangeBits(cpuinfo: string | null = readCpuinfo()): 7 | 8 {
  if (cpuinfo === null || !/^flags\s*:/m.test(cpuinfo)) return 8; // not x86 Linux: ARM's kernels do not saturate
  return /\b(avx512_vnni|avx_vnni|amx_int8)\b/.test(cpuinfo) ? 8 : 7;
}

function readCpuinfo(): string | null {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
}

/** W [n, k] (Hugging Face's [out, in]) to per-channel codes on `bits` (8: |w| <= 127, 7: <= 63). */
export function quantizePerChannel(w: Float32Array, n: number, k: number, bits: 7 | 8): ChannelQuantized {
  if (w.length !== n * k) throw new Error(`quantizePerChannel: expected ${n}x${k} values, got ${w.length}`);
  const qmax = (1 << (bits - 1)) - 1;
  const codes = new Int8Array(k * n);
  const scales = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let absMax = 0;
    for (let i = 0; i < k; i++) absMax = Math.max(absMax, Math.abs(w[j * k + i] ?? 0));
    const inv = absMax === 0 ? 0 : qmax / absMax;
    for (let i = 0; i < k; i++) codes[i * n + j] = Math.round((w[j * k + i] ?? 0) * inv);
    scales[j] = absMax / (qmax * 127);
  }
  return { codes, scales };
}

/** The float32 weights [n, k] the codes stand for (references and error measurement). */
export function dequantizePerChannel(q: ChannelQuantized, n: number, k: number): Float32Array {
  const out = new Float32Array(n * k);
  for (let j = 0; j < n; j++) {
    const s = (q.scales[j] ?? 0) * 127;
    for (let i = 0; i < k; i++) out[j * k + i] = (q.codes[i * n + j] ?? 0) * s;
  }
  return out;
}

/**
 * x [M, K] float32 through the per-channel int8 weights `codes` [K, N] and `scales` [N]; returns
 * [M, N] float32, the activations quantized per row (token) in the graph. At prefill sizes the
 * passes over [M, K] and [M, N] cost as much as the product, so each full-size tensor is read or
 * written as few times as onnxruntime allows: the row's |max| from ReduceMax and ReduceMin (no
 * Abs copy), one QuantizeLinear with a per-row scale, the product with the channel scales applied
 * in its epilogue (MatMulIntegerToFloat), one Mul by the row scale.
 * (Choosing onnxruntime's one-node DynamicQuantizeLinear for single-row steps behind an If was
 * measured slower: the If's subgraph costs more than the nodes it saves.)
 */
export function w8a8Linear(g: GraphBuilder, x: string, codes: string, scales: string, zeroPoint128: string): string {
  const reduce = (op: string): string => g.op(op, [x], { axes: attr.ints([-1]), keepdims: attr.int(1) });
  // A row of zeros has no scale; the floor keeps it finite (its codes are all zero anyway).
  const absMax = g.op('Max', [g.op('Max', [reduce('ReduceMax'), g.op('Neg', [reduce('ReduceMin')])]), g.scalarF32(1e-30)]); // [M, 1]
  const rowScale = g.op('Reshape', [g.op('Div', [absMax, g.scalarF32(127)]), g.int64s([-1])]); // [M]
  const rowZero = g.op('Expand', [zeroPoint128, g.op('Shape', [rowScale])]);
  const q = g.op('QuantizeLinear', [x, rowScale, rowZero], { axis: attr.int(0) }); // uint8, zero point 128
  const one = g.scalarF32(1);
  const product = g.op('MatMulIntegerToFloat', [q, codes, one, scales, zeroPoint128], {}, 'com.microsoft'); // (a . w_j) s_j
  return g.op('Mul', [product, absMax]);
}
