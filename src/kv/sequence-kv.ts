/**
 * One sequence's KV cache: per layer, keys and values time-major
 * [capacity, kvHeads, headDim] in float32, so the first `length` entries are a
 * contiguous prefix that can be handed to onnxruntime without copying. Each
 * entry remembers its RoPE position (eviction may leave gaps).
 */
import type { KvPool } from './kv-pool.js';

export interface KvShape {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

const BLOCK_TOKENS = 64;

export function kvBytesPerToken(shape: KvShape): number {
  return shape.numLayers * 2 * shape.numKvHeads * shape.headDim * Float32Array.BYTES_PER_ELEMENT;
}

export class SequenceKv {
  private keys: Float32Array[];
  private values: Float32Array[];
  private pos: Int32Array;
  private len = 0;
  private cap = 0;
  private readonly rowFloats: number;
  private released = false;

  constructor(
    readonly shape: KvShape,
    private readonly pool: KvPool,
    /** Tokens this sequence reserved in the pool; allocation never exceeds it. */
    readonly reservedTokens: number,
  ) {
    this.rowFloats = shape.numKvHeads * shape.headDim;
    this.keys = [];
    this.values = [];
    this.pos = new Int32Array(0);
  }

  get length(): number {
    return this.len;
  }

  get capacity(): number {
    return this.cap;
  }

  /** K/V bytes allocated for this sequence (exact). */
  get allocatedBytes(): number {
    return this.cap * kvBytesPerToken(this.shape);
  }

  get positions(): Int32Array {
    return this.pos.subarray(0, this.len);
  }

  /** Next RoPE position: one past the last entry's. */
  get nextPosition(): number {
    return this.len === 0 ? 0 : (this.pos[this.len - 1] ?? 0) + 1;
  }

  /** Contiguous view of layer l's keys [length, kvH, D]. */
  keyView(l: number): Float32Array {
    return this.layer(this.keys, l).subarray(0, this.len * this.rowFloats);
  }

  valueView(l: number): Float32Array {
    return this.layer(this.values, l).subarray(0, this.len * this.rowFloats);
  }

  private layer(arr: Float32Array[], l: number): Float32Array {
    const a = arr[l];
    if (!a) throw new Error(`SequenceKv: no layer ${l}`);
    return a;
  }

  private ensureCapacity(tokens: number): void {
    if (this.released) throw new Error('SequenceKv: used after release');
    if (tokens <= this.cap) return;
    if (tokens > this.reservedTokens) {
      throw new Error(`SequenceKv: ${tokens} tokens exceed the reservation of ${this.reservedTokens}`);
    }
    const next = Math.min(this.reservedTokens, Math.max(tokens, Math.ceil((this.cap * 3) / 2 / BLOCK_TOKENS) * BLOCK_TOKENS, BLOCK_TOKENS));
    const grow = (old: Float32Array[]): Float32Array[] =>
      Array.from({ length: this.shape.numLayers }, (_, l) => {
        const fresh = new Float32Array(next * this.rowFloats);
        const prev = old[l];
        if (prev) fresh.set(prev.subarray(0, this.len * this.rowFloats));
        return fresh;
      });
    this.keys = grow(this.keys);
    this.values = grow(this.values);
    const pos = new Int32Array(next);
    pos.set(this.pos.subarray(0, this.len));
    this.pos = pos;
    this.pool.noteAllocated((next - this.cap) * kvBytesPerToken(this.shape));
    this.cap = next;
  }

  /**
   * Appends `count` entries taken from row `row` of present tensors shaped
   * [B, T, kvH, D] (T >= count), with the given positions.
   */
  append(presentKeys: readonly Float32Array[], presentValues: readonly Float32Array[], row: number, tokensPerRow: number, positions: ArrayLike<number>): void {
    const count = positions.length;
    this.ensureCapacity(this.len + count);
    const src = row * tokensPerRow * this.rowFloats;
    const n = count * this.rowFloats;
    const dst = this.len * this.rowFloats;
    for (let l = 0; l < this.shape.numLayers; l++) {
      const pk = presentKeys[l];
      const pv = presentValues[l];
      if (!pk || !pv) throw new Error(`SequenceKv.append: layer ${l} missing`);
      this.layer(this.keys, l).set(pk.subarray(src, src + n), dst);
      this.layer(this.values, l).set(pv.subarray(src, src + n), dst);
    }
    for (let i = 0; i < count; i++) this.pos[this.len + i] = positions[i] ?? 0;
    this.len += count;
  }

  /** Keeps only the entries at `keep` (ascending indices), compacting in place. Used by eviction policies. */
  retain(keep: ArrayLike<number>): void {
    let prev = -1;
    for (let i = 0; i < keep.length; i++) {
      const idx = keep[i] ?? -1;
      if (idx <= prev || idx >= this.len) throw new Error(`SequenceKv.retain: indices must be ascending and < ${this.len}`);
      prev = idx;
    }
    for (let l = 0; l < this.shape.numLayers; l++) {
      for (const arr of [this.layer(this.keys, l), this.layer(this.values, l)]) {
        for (let i = 0; i < keep.length; i++) {
          const from = (keep[i] ?? 0) * this.rowFloats;
          if (from !== i * this.rowFloats) arr.copyWithin(i * this.rowFloats, from, from + this.rowFloats);
        }
      }
    }
    for (let i = 0; i < keep.length; i++) this.pos[i] = this.pos[keep[i] ?? 0] ?? 0;
    this.len = keep.length;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.pool.noteAllocated(-this.allocatedBytes);
    this.pool.unreserve(this.reservedTokens * kvBytesPerToken(this.shape));
    this.keys = [];
    this.values = [];
    this.cap = 0;
    this.len = 0;
  }
}
