/**
 * One sequence's KV cache. Per layer, keys and values are head-major
 * [numKvHeads, capacity, headDim] float32: the graph reads the whole buffer in
 * place (a single sequence is passed to onnxruntime without any copy) and the
 * entries past `length(layer)` are masked out. Layers may hold different numbers
 * of entries (per-layer eviction budgets), every head of a layer the same number
 * (per-head eviction keeps equal counts), each entry with its own RoPE position.
 * An optional per-entry accumulator (attention received, for H2O) moves with
 * the entries when they are compacted.
 */
import { allocKv, copyKv, kvElementBytes, type KvArray, type KvDtype } from './kv-dtype.js';
import type { KvPool } from './kv-pool.js';

export interface KvShape {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Storage element type; absent: fp32. */
  readonly dtype?: KvDtype;
}

export function kvDtypeOf(shape: KvShape): KvDtype {
  return shape.dtype ?? 'fp32';
}

/** Capacities are multiples of this (Quest pages of 16, 32 or 64 entries tile them exactly). */
export const KV_BLOCK = 64;

/** Entries rounded up to whole blocks: what a reservation must cover. */
export function roundToBlock(entries: number): number {
  return Math.ceil(entries / KV_BLOCK) * KV_BLOCK;
}

export function kvBytesPerToken(shape: KvShape): number {
  return shape.numLayers * 2 * shape.numKvHeads * shape.headDim * kvElementBytes(kvDtypeOf(shape));
}

interface LayerStore {
  keys: KvArray;
  values: KvArray;
  /** [numKvHeads, capacity] */
  positions: Int32Array;
  /** [numKvHeads, capacity] attention received, when enabled. */
  accum: Float32Array | null;
  length: number;
  capacity: number;
  /** Rewrites of existing entries so far (appends are not rewrites). */
  epoch: number;
  /** The lowest entry index each of the last REWRITE_LOG rewrites touched, by epoch modulo REWRITE_LOG. */
  rewriteLog: Int32Array;
}

/** Rewrites remembered per layer: a reader further behind copies the layer whole. */
const REWRITE_LOG = 8;

export class SequenceKv {
  private layers: LayerStore[];
  private readonly rowFloats: number;
  private released = false;
  private next = 0;
  private accumulate = false;
  readonly dtype: KvDtype;
  private readonly elementBytes: number;

  constructor(
    readonly shape: KvShape,
    private readonly pool: KvPool,
    /** Entries per layer this sequence reserved in the pool (a whole number of blocks); allocation never exceeds it. */
    readonly reservedTokens: number,
  ) {
    if (reservedTokens % KV_BLOCK !== 0) throw new Error(`SequenceKv: the reservation (${reservedTokens}) must be a multiple of ${KV_BLOCK} entries`);
    this.rowFloats = shape.headDim;
    this.dtype = kvDtypeOf(shape);
    this.elementBytes = kvElementBytes(this.dtype);
    this.layers = Array.from({ length: shape.numLayers }, () => ({
      keys: allocKv(this.dtype, 0),
      values: allocKv(this.dtype, 0),
      positions: new Int32Array(0),
      accum: null,
      length: 0,
      capacity: 0,
      epoch: 0,
      rewriteLog: new Int32Array(REWRITE_LOG),
    }));
  }

  private layer(l: number): LayerStore {
    const s = this.layers[l];
    if (!s) throw new Error(`SequenceKv: no layer ${l}`);
    return s;
  }

  /** Entries cached in layer l (every head holds this many). */
  length(l: number): number {
    return this.layer(l).length;
  }

  /** The largest layer length: what a decode step must cover for this sequence. */
  get maxLength(): number {
    let m = 0;
    for (const s of this.layers) m = Math.max(m, s.length);
    return m;
  }

  /** The smallest layer length. */
  get minLength(): number {
    let m = Infinity;
    for (const s of this.layers) m = Math.min(m, s.length);
    return m === Infinity ? 0 : m;
  }

  capacity(l: number): number {
    return this.layer(l).capacity;
  }

  /** K/V bytes allocated for this sequence (exact). */
  get allocatedBytes(): number {
    let entries = 0;
    for (const s of this.layers) entries += s.capacity;
    return entries * 2 * this.shape.numKvHeads * this.shape.headDim * this.elementBytes;
  }

  /** K/V bytes holding live entries. */
  get usedBytes(): number {
    let entries = 0;
    for (const s of this.layers) entries += s.length;
    return entries * 2 * this.shape.numKvHeads * this.shape.headDim * this.elementBytes;
  }

  /** RoPE position for the next token. */
  get nextPosition(): number {
    return this.next;
  }

  set nextPosition(p: number) {
    this.next = p;
  }

  /** Whole key buffer of layer l, [numKvHeads, capacity(l), headDim], in the storage dtype (kvAsFloat reads it as numbers). */
  keyBuffer(l: number): KvArray {
    return this.layer(l).keys;
  }

  valueBuffer(l: number): KvArray {
    return this.layer(l).values;
  }

  /** [numKvHeads, capacity(l)]: the position of entry i of head h is at h * capacity + i. */
  positionBuffer(l: number): Int32Array {
    return this.layer(l).positions;
  }

  /** [numKvHeads, capacity(l)] accumulated attention, or null when not enabled. */
  accumulatorBuffer(l: number): Float32Array | null {
    return this.layer(l).accum;
  }

  /** Layer l's rewrite count: a reader keeping a copy of the entries records it, for `rewrittenSince`. */
  rewriteEpoch(l: number): number {
    return this.layer(l).epoch;
  }

  /**
   * The lowest entry index of layer l rewritten in place (compacted by an
   * eviction, re-rotated, re-quantized) since the reader saw `epoch`:
   * Infinity when nothing was, 0 when the reader is too far behind to know.
   * Entries appended since are not rewrites; a reader copies them by length.
   */
  rewrittenSince(l: number, epoch: number): number {
    const s = this.layer(l);
    if (epoch === s.epoch) return Infinity;
    if (epoch > s.epoch || s.epoch - epoch > REWRITE_LOG) return 0;
    let low = Infinity;
    for (let e = epoch + 1; e <= s.epoch; e++) low = Math.min(low, s.rewriteLog[e % REWRITE_LOG] ?? 0);
    return low;
  }

  /** Records that a policy rewrote layer l's entries from index `from` on in place (a copy of them is stale from there). */
  markRewritten(l: number, from: number): void {
    const s = this.layer(l);
    s.epoch += 1;
    s.rewriteLog[s.epoch % REWRITE_LOG] = Math.max(0, Math.min(from, s.length));
  }

  enableAccumulator(): void {
    if (this.accumulate) return;
    this.accumulate = true;
    for (const s of this.layers) s.accum = new Float32Array(this.shape.numKvHeads * s.capacity);
  }

  private grow(s: LayerStore, needed: number): void {
    if (this.released) throw new Error('SequenceKv: used after release');
    if (needed <= s.capacity) return;
    if (needed > this.reservedTokens) {
      throw new Error(`SequenceKv: ${needed} entries exceed the reservation of ${this.reservedTokens}`);
    }
    // Geometric growth keeps re-allocation copies linear overall; capped by the reservation. Within
    // twice what is needed, the whole reservation at once: a sequence mostly fills what it reserved
    // (its prompt and max_tokens), and each growth copies its whole cache into fresh memory, in the
    // middle of a decode step (135m, 350 entries: about 12 ms).
    const cap =
      this.reservedTokens <= 2 * needed ? this.reservedTokens : Math.min(this.reservedTokens, roundToBlock(Math.max(needed, Math.ceil(s.capacity * 1.25))));
    const KV = this.shape.numKvHeads;
    const D = this.rowFloats;
    const moveRows = <A extends KvArray | Int32Array>(old: A, fresh: A, width: number): A => {
      for (let h = 0; h < KV; h++) {
        fresh.set(old.subarray(h * s.capacity * width, (h * s.capacity + s.length) * width), h * cap * width);
      }
      return fresh;
    };
    s.keys = moveRows(s.keys, allocKv(this.dtype, KV * cap * D), D);
    s.values = moveRows(s.values, allocKv(this.dtype, KV * cap * D), D);
    s.positions = moveRows(s.positions, new Int32Array(KV * cap), 1);
    if (s.accum) s.accum = moveRows(s.accum, new Float32Array(KV * cap), 1);
    else if (this.accumulate) s.accum = new Float32Array(KV * cap);
    this.pool.noteAllocated((cap - s.capacity) * 2 * KV * D * this.elementBytes);
    s.capacity = cap;
  }

  /**
   * Appends `positions.length` entries to every layer, taken from row `row` of
   * present tensors shaped [B, KV, T, D] (T = tokensPerRow >= count), float32 or
   * already in the storage dtype (prefix-cache blocks); converted as needed.
   */
  append(presentKeys: readonly KvArray[], presentValues: readonly KvArray[], row: number, tokensPerRow: number, positions: ArrayLike<number>): void {
    const count = positions.length;
    const KV = this.shape.numKvHeads;
    const D = this.rowFloats;
    for (let l = 0; l < this.shape.numLayers; l++) {
      const s = this.layer(l);
      this.grow(s, s.length + count);
      const pk = presentKeys[l];
      const pv = presentValues[l];
      if (!pk || !pv) throw new Error(`SequenceKv.append: layer ${l} missing`);
      for (let h = 0; h < KV; h++) {
        const src = (row * KV + h) * tokensPerRow * D;
        const dst = (h * s.capacity + s.length) * D;
        copyKv(s.keys, dst, pk, src, count * D);
        copyKv(s.values, dst, pv, src, count * D);
        const pbase = h * s.capacity + s.length;
        for (let i = 0; i < count; i++) s.positions[pbase + i] = positions[i] ?? 0;
        if (s.accum) s.accum.fill(0, pbase, pbase + count);
      }
      s.length += count;
    }
    for (let i = 0; i < count; i++) this.next = Math.max(this.next, (positions[i] ?? 0) + 1);
  }

  /**
   * Keeps, in layer l, only the entries listed per head (ascending indices, the
   * same count for every head), compacting in place. Used by eviction policies.
   */
  retain(l: number, keep: readonly Int32Array[]): void {
    const s = this.layer(l);
    const KV = this.shape.numKvHeads;
    const D = this.rowFloats;
    if (keep.length !== KV) throw new Error(`SequenceKv.retain: expected ${KV} heads, got ${keep.length}`);
    const n = keep[0]?.length ?? 0;
    let firstMoved = n;
    for (let h = 0; h < KV; h++) {
      const idx = keep[h];
      if (!idx || idx.length !== n) throw new Error('SequenceKv.retain: every head must keep the same number of entries');
      let prev = -1;
      for (let i = 0; i < n; i++) {
        const e = idx[i] ?? -1;
        if (e <= prev || e >= s.length) throw new Error(`SequenceKv.retain: indices must be ascending and < ${s.length}`);
        prev = e;
      }
      const rowBase = h * s.capacity;
      for (let i = 0; i < n; i++) {
        const from = rowBase + (idx[i] ?? 0);
        const to = rowBase + i;
        if (from === to) continue;
        firstMoved = Math.min(firstMoved, i);
        s.keys.copyWithin(to * D, from * D, (from + 1) * D);
        s.values.copyWithin(to * D, from * D, (from + 1) * D);
        s.positions[to] = s.positions[from] ?? 0;
        if (s.accum) s.accum[to] = s.accum[from] ?? 0;
      }
    }
    const shortened = n < s.length;
    s.length = n;
    if (firstMoved < n || shortened) this.markRewritten(l, firstMoved);
    this.shrink(s);
  }

  /**
   * After an eviction, gives back whole blocks beyond the live entries plus one
   * block of headroom, so the memory an eviction policy saves is really freed (and
   * the pool's allocation, which the C metrics read, says so).
   */
  private shrink(s: LayerStore): void {
    const cap = roundToBlock(s.length) + KV_BLOCK;
    if (cap >= s.capacity) return;
    const KV = this.shape.numKvHeads;
    const D = this.rowFloats;
    const moveRows = <A extends KvArray | Int32Array>(old: A, fresh: A, width: number): A => {
      for (let h = 0; h < KV; h++) fresh.set(old.subarray(h * s.capacity * width, (h * s.capacity + s.length) * width), h * cap * width);
      return fresh;
    };
    s.keys = moveRows(s.keys, allocKv(this.dtype, KV * cap * D), D);
    s.values = moveRows(s.values, allocKv(this.dtype, KV * cap * D), D);
    s.positions = moveRows(s.positions, new Int32Array(KV * cap), 1);
    if (s.accum) s.accum = moveRows(s.accum, new Float32Array(KV * cap), 1);
    this.pool.noteAllocated((cap - s.capacity) * 2 * KV * D * this.elementBytes);
    s.capacity = cap;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.pool.noteAllocated(-this.allocatedBytes);
    this.pool.unreserve(this.reservedTokens * kvBytesPerToken(this.shape));
    for (const s of this.layers) {
      s.keys = allocKv(this.dtype, 0);
      s.values = allocKv(this.dtype, 0);
      s.positions = new Int32Array(0);
      s.accum = null;
      s.capacity = 0;
      s.length = 0;
    }
  }
}
