/**
 * Block-wise symmetric weight quantization in onnxruntime's MatMulNBits layout.
 * A weight W[N][K] (Hugging Face's [out, in]) becomes, per output row n and per
 * block of `blockSize` inputs, one float scale and blockSize codes of `bits` bits
 * with the implicit zero point 2^(bits-1) (MatMulNBits' default when no
 * zero_points input is given). 4-bit codes pack two per byte, low nibble first.
 * K is zero-padded up to a whole number of blocks.
 */
export type QuantBits = 4 | 8;

export interface QuantizedMatrix {
  readonly bits: QuantBits;
  readonly n: number;
  readonly k: number;
  readonly blockSize: number;
  readonly blocksPerRow: number;
  /** [n, blocksPerRow, blockSize * bits / 8] */
  readonly codes: Uint8Array;
  /** [n * blocksPerRow] */
  readonly scales: Float32Array;
}

export function quantizeBlockwise(w: Float32Array, n: number, k: number, bits: QuantBits, blockSize: number): QuantizedMatrix {
  if (w.length !== n * k) throw new Error(`quantizeBlockwise: expected ${n}x${k} values, got ${w.length}`);
  const blocksPerRow = Math.ceil(k / blockSize);
  const blobBytes = (blockSize * bits) / 8;
  const codes = new Uint8Array(n * blocksPerRow * blobBytes);
  const scales = new Float32Array(n * blocksPerRow);
  const zero = 1 << (bits - 1);
  const qmax = (1 << bits) - 1;
  // Symmetric: the largest magnitude maps to -2^(bits-1), using the wider negative side.
  const divisor = zero;
  for (let row = 0; row < n; row++) {
    for (let b = 0; b < blocksPerRow; b++) {
      const start = row * k + b * blockSize;
      const end = row * k + Math.min(k, (b + 1) * blockSize);
      let absMax = 0;
      let signedMax = 0;
      for (let i = start; i < end; i++) {
        const v = w[i] ?? 0;
        if (Math.abs(v) > absMax) {
          absMax = Math.abs(v);
          signedMax = v;
        }
      }
      // Map the extreme value onto -2^(bits-1) exactly (llama.cpp's Q4_0 trick): one more level of range.
      const scale = absMax === 0 ? 1 : -signedMax / divisor;
      scales[row * blocksPerRow + b] = scale;
      const inv = 1 / scale;
      const blob = (row * blocksPerRow + b) * blobBytes;
      for (let i = 0; i < blockSize; i++) {
        const src = start + i;
        const v = src < end ? (w[src] ?? 0) : 0;
        const q = Math.max(0, Math.min(qmax, Math.round(v * inv) + zero));
        if (bits === 8) codes[blob + i] = q;
        else if ((i & 1) === 0) codes[blob + (i >> 1)] = q;
        else codes[blob + (i >> 1)] = (codes[blob + (i >> 1)] ?? 0) | (q << 4);
      }
    }
  }
  return { bits, n, k, blockSize, blocksPerRow, codes, scales };
}

/** The float32 matrix the quantized codes stand for (for error measurement and references). */
export function dequantize(m: QuantizedMatrix): Float32Array {
  const out = new Float32Array(m.n * m.k);
  const blobBytes = (m.blockSize * m.bits) / 8;
  const zero = 1 << (m.bits - 1);
  for (let row = 0; row < m.n; row++) {
    for (let col = 0; col < m.k; col++) {
      const b = Math.floor(col / m.blockSize);
      const i = col % m.blockSize;
      const blob = (row * m.blocksPerRow + b) * blobBytes;
      const byte = m.codes[blob + (m.bits === 8 ? i : i >> 1)] ?? 0;
      const q = m.bits === 8 ? byte : (i & 1) === 0 ? byte & 0x0f : byte >> 4;
      out[row * m.k + col] = (q - zero) * (m.scales[row * m.blocksPerRow + b] ?? 0);
    }
  }
  return out;
}
