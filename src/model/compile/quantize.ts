/**
 * Block-wise symmetric weight quantization in onnxruntime's MatMulNBits layout,
 * for the dense model's int8 and int4 weights. One implementation serves dense
 * and expert weights alike: see moe-quantize.ts (packBlockwise), which also
 * covers 2 bits. A weight W[N][K] (Hugging Face's [out, in]) becomes, per output
 * row and block of `blockSize` inputs, one float scale and codes with the
 * implicit zero point 2^(bits-1); K is zero-padded to whole blocks.
 */
import { packBlockwise, unpackBlockwise, type PackedMatrix } from './moe-quantize.js';

export type QuantBits = 4 | 8;

export type QuantizedMatrix = PackedMatrix & { readonly bits: QuantBits };

export function quantizeBlockwise(w: Float32Array, n: number, k: number, bits: QuantBits, blockSize: number): QuantizedMatrix {
  return packBlockwise(w, n, k, bits, blockSize) as QuantizedMatrix;
}

/** The float32 matrix the quantized codes stand for (for error measurement and references). */
export function dequantize(m: QuantizedMatrix): Float32Array {
  return unpackBlockwise(m);
}
