/**
 * STI's shards of a dense decoder layer (Guo et al., ASPLOS'23): pieces of a
 * layer's weights that can be stored, loaded and quantized independently.
 *
 *   attention shard g (one per KV head): the q rows of the G = H/KV query heads
 *     that read KV head g, its k and v rows, and the o_proj columns those heads write;
 *   MLP shard s (numKvHeads slices of the intermediate dimension, at least 2): the
 *     gate and up rows of the slice and the down_proj columns that read it.
 *
 * Every weight of a layer's four matrices (fused qkv [(H+2KV)D, h], o [h, HD],
 * fused gate_up [2I, h], down [h, I]) belongs to exactly one shard, so the
 * shards of a layer reassemble those matrices exactly (assembleInto).
 *
 * A shard file is its parts one after another: fp32, each part's values
 * row-major; at 8/4/2 bits, each part's block-wise codes (moe-quantize.ts's
 * MatMulNBits layout) then its float32 scales. Parts of a shard:
 *   attention: [rows: q rows, k rows, v rows] ((G+2)D x h), [o cols] (h x GD)
 *   MLP:       [rows: gate rows, up rows]     (2w x h),     [down cols] (h x w)
 */
import { packBlockwise, type ExpertBits, type QuantExpertBits } from './moe-quantize.js';
import type { ModelSpec } from '../spec.js';

export type ShardKind = 'attn' | 'mlp';

/** One file of a shard store as its manifest lists it (STI shards; the expert files have the same three fields). */
export interface ShardFile {
  /** Relative to the store's directory. */
  readonly file: string;
  readonly bytes: number;
  readonly crc32: number;
}

export interface ShardDesc {
  readonly layer: number;
  readonly kind: ShardKind;
  /** KV head (attention) or slice number (MLP). */
  readonly index: number;
  /** Attention: query heads [lo, hi) of the group; MLP: intermediate columns [lo, hi). */
  readonly lo: number;
  readonly hi: number;
}

/** The layer matrices a runner feeds its layer graph, row-major as Hugging Face stores them ([out, in]). */
export interface LayerMatrices {
  readonly qkv: Float32Array;
  readonly o: Float32Array;
  readonly gateUp: Float32Array;
  readonly down: Float32Array;
}

export const SHARD_BITS: readonly ExpertBits[] = [32, 8, 4, 2];

/** Number of MLP slices per layer: one per KV head (as many as attention shards), at least 2, at most the intermediate size. */
export function mlpSlices(spec: ModelSpec): number {
  return Math.min(spec.intermediateSize, Math.max(2, spec.numKvHeads));
}

/** Every shard of the model, layer by layer: attention groups then MLP slices. Shard id = position in this list. */
export function shardLayout(spec: ModelSpec): ShardDesc[] {
  const out: ShardDesc[] = [];
  const G = spec.numHeads / spec.numKvHeads;
  const S = mlpSlices(spec);
  const I = spec.intermediateSize;
  for (let l = 0; l < spec.numLayers; l++) {
    for (let g = 0; g < spec.numKvHeads; g++) out.push({ layer: l, kind: 'attn', index: g, lo: g * G, hi: (g + 1) * G });
    for (let s = 0; s < S; s++) out.push({ layer: l, kind: 'mlp', index: s, lo: Math.floor((s * I) / S), hi: Math.floor(((s + 1) * I) / S) });
  }
  return out;
}

/** [n, k] of each part of a shard. */
export function shardParts(spec: ModelSpec, s: ShardDesc): ReadonlyArray<readonly [number, number]> {
  const D = spec.headDim;
  const h = spec.hiddenSize;
  if (s.kind === 'attn') {
    const G = s.hi - s.lo;
    return [
      [(G + 2) * D, h],
      [h, G * D],
    ];
  }
  const w = s.hi - s.lo;
  return [
    [2 * w, h],
    [h, w],
  ];
}

/** Block size along K for a part: 32, or K rounded up to whole 2-bit bytes when K is smaller. */
export function shardBlockSize(k: number): number {
  return k >= 32 ? 32 : Math.ceil(k / 4) * 4;
}

/**
 * Where each row segment of a part goes in the layer matrices: `rows` parts copy
 * row runs, `cols` parts copy a column band of every row.
 */
interface Placement {
  readonly target: keyof LayerMatrices;
  /** First target row of each run of the part's rows, and run length. */
  readonly runs: ReadonlyArray<{ readonly partRow: number; readonly targetRow: number; readonly rows: number }>;
  /** Column offset and target row stride (the target's K). */
  readonly col: number;
  readonly stride: number;
}

function placements(spec: ModelSpec, s: ShardDesc): [Placement, Placement] {
  const D = spec.headDim;
  const H = spec.numHeads;
  const KV = spec.numKvHeads;
  const h = spec.hiddenSize;
  const I = spec.intermediateSize;
  if (s.kind === 'attn') {
    const G = s.hi - s.lo;
    return [
      {
        target: 'qkv',
        runs: [
          { partRow: 0, targetRow: s.lo * D, rows: G * D },
          { partRow: G * D, targetRow: H * D + s.index * D, rows: D },
          { partRow: (G + 1) * D, targetRow: H * D + KV * D + s.index * D, rows: D },
        ],
        col: 0,
        stride: h,
      },
      { target: 'o', runs: [{ partRow: 0, targetRow: 0, rows: h }], col: s.lo * D, stride: H * D },
    ];
  }
  const w = s.hi - s.lo;
  return [
    {
      target: 'gateUp',
      runs: [
        { partRow: 0, targetRow: s.lo, rows: w },
        { partRow: w, targetRow: I + s.lo, rows: w },
      ],
      col: 0,
      stride: h,
    },
    { target: 'down', runs: [{ partRow: 0, targetRow: 0, rows: h }], col: s.lo, stride: I },
  ];
}

/** The shard's parts cut out of the layer matrices (fp32). */
export function extractShard(spec: ModelSpec, s: ShardDesc, m: LayerMatrices): Float32Array[] {
  const parts = shardParts(spec, s);
  return placements(spec, s).map((p, i) => {
    const [n, k] = parts[i] ?? [0, 0];
    const out = new Float32Array(n * k);
    const src = m[p.target];
    for (const run of p.runs) {
      for (let r = 0; r < run.rows; r++) {
        const from = (run.targetRow + r) * p.stride + p.col;
        out.set(src.subarray(from, from + k), (run.partRow + r) * k);
      }
    }
    return out;
  });
}

/** A shard file's bytes at `bits`. */
export function encodeShard(spec: ModelSpec, s: ShardDesc, parts: readonly Float32Array[], bits: ExpertBits): Uint8Array {
  const dims = shardParts(spec, s);
  const chunks: Uint8Array[] = [];
  parts.forEach((p, i) => {
    const [n, k] = dims[i] ?? [0, 0];
    if (bits === 32) {
      chunks.push(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
      return;
    }
    const q = packBlockwise(p, n, k, bits, shardBlockSize(k));
    chunks.push(q.codes, new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength));
  });
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

/** File bytes of a shard at `bits`, without encoding it. */
export function shardFileBytes(spec: ModelSpec, s: ShardDesc, bits: ExpertBits): number {
  let total = 0;
  for (const [n, k] of shardParts(spec, s)) {
    if (bits === 32) {
      total += n * k * 4;
      continue;
    }
    const bs = shardBlockSize(k);
    const blocks = Math.ceil(k / bs);
    total += n * blocks * ((bs * bits) / 8) + n * blocks * 4;
  }
  return total;
}

/**
 * Writes a shard file's weights into the layer matrices: fp32 bytes are copied,
 * quantized codes dequantized straight into place (STI decompresses a shard
 * into the layer's compute buffer; nothing else holds the fp32 values).
 */
export function assembleInto(spec: ModelSpec, s: ShardDesc, bits: ExpertBits, bytes: Uint8Array, m: LayerMatrices): void {
  const dims = shardParts(spec, s);
  let off = bytes.byteOffset;
  const buffer = bytes.buffer;
  placements(spec, s).forEach((p, i) => {
    const [n, k] = dims[i] ?? [0, 0];
    const dst = m[p.target];
    if (bits === 32) {
      const src = off % 4 === 0 ? new Float32Array(buffer, off, n * k) : new Float32Array(buffer.slice(off, off + n * k * 4));
      for (const run of p.runs) {
        for (let r = 0; r < run.rows; r++) {
          const from = (run.partRow + r) * k;
          dst.set(src.subarray(from, from + k), (run.targetRow + r) * p.stride + p.col);
        }
      }
      off += n * k * 4;
      return;
    }
    const b: QuantExpertBits = bits;
    const bs = shardBlockSize(k);
    const blocks = Math.ceil(k / bs);
    const blob = (bs * b) / 8;
    const codes = new Uint8Array(buffer, off, n * blocks * blob);
    off += codes.byteLength;
    const scaleBytes = n * blocks * 4;
    const scales = off % 4 === 0 ? new Float32Array(buffer, off, n * blocks) : new Float32Array(buffer.slice(off, off + scaleBytes));
    off += scaleBytes;
    const zero = 1 << (b - 1);
    const mask = (1 << b) - 1;
    const perByte = 8 / b;
    for (const run of p.runs) {
      for (let r = 0; r < run.rows; r++) {
        const row = run.partRow + r;
        const base = (run.targetRow + r) * p.stride + p.col;
        for (let blk = 0; blk < blocks; blk++) {
          const scale = scales[row * blocks + blk] ?? 0;
          const cb = (row * blocks + blk) * blob;
          const c0 = blk * bs;
          const c1 = Math.min(k, c0 + bs);
          for (let c = c0; c < c1; c++) {
            const i = c - c0;
            const q = ((codes[cb + Math.floor(i / perByte)] ?? 0) >> ((i % perByte) * b)) & mask;
            dst[base + c] = (q - zero) * scale;
          }
        }
      }
    }
  });
}

/** Empty layer matrices for `spec` (the runner's compute buffer). */
export function allocLayer(spec: ModelSpec): LayerMatrices {
  const D = spec.headDim;
  const h = spec.hiddenSize;
  const I = spec.intermediateSize;
  return {
    qkv: new Float32Array((spec.numHeads + 2 * spec.numKvHeads) * D * h),
    o: new Float32Array(h * spec.numHeads * D),
    gateUp: new Float32Array(2 * I * h),
    down: new Float32Array(h * I),
  };
}
