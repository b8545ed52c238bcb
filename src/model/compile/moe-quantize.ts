/**
 * Block-wise symmetric quantization of expert weights at 8, 4 or 2 bits in
 * onnxruntime's MatMulNBits layout (the same scheme as quantize.ts, which covers
 * 8 and 4 for the dense model): per output row and per block of `blockSize`
 * inputs one float scale; codes packed low bits first, 8/bits codes per byte,
 * implicit zero point 2^(bits-1). The extreme value of a block maps exactly onto
 * -2^(bits-1), so at 2 bits the levels are {-2, -1, 0, 1} x scale.
 */
export type ExpertBits = 2 | 4 | 8 | 32;

export const EXPERT_BITS: readonly ExpertBits[] = [32, 8, 4, 2];

export type QuantExpertBits = Exclude<ExpertBits, 32>;

export interface PackedMatrix {
  readonly bits: QuantExpertBits;
  readonly n: number;
  readonly k: number;
  readonly blockSize: number;
  readonly blocksPerRow: number;
  /** [n, blocksPerRow, blockSize * bits / 8] */
  readonly codes: Uint8Array;
  /** [n * blocksPerRow] */
  readonly scales: Float32Array;
}

export function packBlockwise(w: Float32Array, n: number, k: number, bits: QuantExpertBits, blockSize: number): PackedMatrix {
  if (w.length !== n * k) throw new Error(`packBlockwise: expected ${n}x${k} values, got ${w.length}`);
  if ((blockSize * bits) % 8 !== 0) throw new Error(`packBlockwise: block ${blockSize} x ${bits} bits is not whole bytes`);
  const blocksPerRow = Math.ceil(k / blockSize);
  const blobBytes = (blockSize * bits) / 8;
  const codes = new Uint8Array(n * blocksPerRow * blobBytes);
  const scales = new Float32Array(n * blocksPerRow);
  const zero = 1 << (bits - 1);
  const qmax = (1 << bits) - 1;
  const perByte = 8 / bits;
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
      const scale = absMax === 0 ? 1 : -signedMax / zero;
      scales[row * blocksPerRow + b] = scale;
      const inv = 1 / scale;
      const blob = (row * blocksPerRow + b) * blobBytes;
      for (let i = 0; i < blockSize; i++) {
        const src = start + i;
        const v = src < end ? (w[src] ?? 0) : 0;
        const q = Math.max(0, Math.min(qmax, Math.round(v * inv) + zero));
        const at = blob + Math.floor(i / perByte);
        codes[at] = (codes[at] ?? 0) | (q << ((i % perByte) * bits));
      }
    }
  }
  return { bits, n, k, blockSize, blocksPerRow, codes, scales };
}

/** The float32 matrix the codes stand for. */
export function unpackBlockwise(m: PackedMatrix): Float32Array {
  const out = new Float32Array(m.n * m.k);
  const blobBytes = (m.blockSize * m.bits) / 8;
  const zero = 1 << (m.bits - 1);
  const mask = (1 << m.bits) - 1;
  const perByte = 8 / m.bits;
  for (let row = 0; row < m.n; row++) {
    for (let col = 0; col < m.k; col++) {
      const b = Math.floor(col / m.blockSize);
      const i = col % m.blockSize;
      const byte = m.codes[(row * m.blocksPerRow + b) * blobBytes + Math.floor(i / perByte)] ?? 0;
      const q = (byte >> ((i % perByte) * m.bits)) & mask;
      out[row * m.k + col] = (q - zero) * (m.scales[row * m.blocksPerRow + b] ?? 0);
    }
  }
  return out;
}

/** What a weight matrix becomes when stored at `bits` (identity at 32). */
export function roundTrip(w: Float32Array, n: number, k: number, bits: ExpertBits, blockSize: number): Float32Array {
  return bits === 32 ? w : unpackBlockwise(packBlockwise(w, n, k, bits, blockSize));
}
