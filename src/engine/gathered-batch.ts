/**
 * The gathered past of one decode group, kept from step to step. A batch of
 * sequences decodes from one [B, numKvHeads, C, headDim] buffer per layer (the
 * graph reads a batch as one tensor); gathering it afresh every step copied
 * every row's whole cache per token: at 32 streams of 350 tokens on a 135M
 * model, 65 ms of a 166 ms step. Here each row remembers how far it has copied
 * its sequence's cache and what it saw of the sequence's rewrites, so a steady
 * step copies only the entries the last pass appended; a row is copied whole
 * when its sequence joins the batch, when eviction, re-rotation or
 * re-quantization rewrote entries it holds (only from the first rewritten
 * entry). C keeps a block of headroom, so a growing batch re-lays out once per
 * block, not per step, and moves what its rows hold (in place when the buffer
 * has room) instead of copying them again. A layer re-lays out shortly before a
 * row would outgrow it, a few layers per step: moving every layer in one step
 * made that step 4x a plain one (135m, 32 rows of about 450 entries: 470 ms
 * building the inputs against 8). Buffers keep room for a quarter more rows
 * (up to the engine's concurrency), so C can grow by a block in place (from
 * about 256 entries on); a layer with no room for another row, while the batch
 * may still gain one, reallocates early, a few layers per step, so a row that
 * joins finds room (reallocating every layer in the step a row joined was
 * about 120 ms at 8 rows).
 *
 * The row order is the caller's; `arrange` proposes one that keeps sequences
 * in the rows they already fill (a departure's row is taken by a newcomer or
 * by the last row), so membership changes copy one row, not all that follow.
 * Correctness never depends on the order: a row holding another sequence than
 * asked is copied whole. Masks are not kept here (they are cheap and depend on
 * positions and windows): the step input builder writes them.
 */
import { allocKv, copyKv, type KvArray, type KvDtype } from '../kv/kv-dtype.js';
import { KV_BLOCK, roundToBlock, type SequenceKv } from '../kv/sequence-kv.js';

/** One layer's gathered past: [rows, numKvHeads, capacity, headDim] at the start of `keys`/`values`. */
export interface GatheredLayer {
  readonly keys: KvArray;
  readonly values: KvArray;
  readonly capacity: number;
}

interface Row {
  readonly kv: SequenceKv;
  /** Per layer: entries copied (-1: none, copy whole). */
  readonly synced: Int32Array;
  /** Per layer: the sequence's rewrite epoch when last copied. */
  readonly epochs: Int32Array;
}

interface LayerBuffers {
  keys: KvArray;
  values: KvArray;
  capacity: number;
}

/** C fits while it covers the longest row with at most this many blocks to spare; else it is re-laid out with one. */
const SPARE_BLOCKS = 3;
/** A layer whose C covers the longest row with fewer entries to spare than this is re-laid out early, a few layers per step. */
const EARLY_HEADROOM = KV_BLOCK / 2;
/** Layers re-laid out early per step: numLayers / this (at least one), so a batch's layers grow over many steps, not all in one. */
const EARLY_SPREAD = 16;

/**
 * Rows a (re)allocated buffer has room for: a quarter more than the batch (at least two more),
 * so a batch that gains rows rarely reallocates; never more than the most rows a batch can have.
 */
export function rowsFor(batch: number, maxRows = Infinity): number {
  return Math.max(batch, Math.min(maxRows, batch + Math.max(2, Math.ceil(batch / 4))));
}

export class GatheredBatch {
  private rows: Row[] = [];
  private readonly layers: LayerBuffers[];
  /** Entries copied into this batch so far, over all rows, layers and heads' rows (one per entry and layer): a measure of the copying. */
  copiedEntries = 0;

  constructor(
    private readonly numLayers: number,
    private readonly numKvHeads: number,
    private readonly headDim: number,
    private readonly dtype: KvDtype,
    /** The most rows a batch can have (the engine's concurrency): no room is kept beyond it. */
    private readonly maxRows = Infinity,
  ) {
    this.layers = Array.from({ length: numLayers }, () => ({ keys: allocKv(dtype, 0), values: allocKv(dtype, 0), capacity: 0 }));
  }

  /** Bytes the gathered past holds (keys and values, every layer): a copy of its rows' caches. */
  get bytes(): number {
    let n = 0;
    for (const layer of this.layers) n += layer.keys.byteLength + layer.values.byteLength;
    return n;
  }

  /**
   * An order of `kvs` (indices into it) that keeps every sequence already in a
   * row below kvs.length in that row and fills the other rows with the rest.
   */
  arrange(kvs: readonly SequenceKv[]): number[] {
    const n = kvs.length;
    const index = new Map<SequenceKv, number>();
    kvs.forEach((kv, i) => index.set(kv, i));
    const slots: (number | null)[] = new Array<number | null>(n).fill(null);
    const placed = new Set<number>();
    this.rows.forEach((row, b) => {
      const i = index.get(row.kv);
      if (i !== undefined && b < n) {
        slots[b] = i;
        placed.add(i);
      }
    });
    let free = 0;
    for (let i = 0; i < n; i++) {
      if (placed.has(i)) continue;
      while (slots[free] !== null) free++;
      slots[free] = i;
    }
    return slots.map((s) => s ?? 0);
  }

  /**
   * Brings row b up to date with kvs[b] for every b and returns each layer's
   * gathered past (null for a layer no row has entries in). Entries past a
   * row's length hold stale data: the caller's mask blocks them.
   */
  sync(kvs: readonly SequenceKv[]): (GatheredLayer | null)[] {
    const B = kvs.length;
    for (let b = 0; b < B; b++) {
      const kv = kvs[b];
      if (!kv) throw new Error('unreachable: no sequence for a row');
      if (this.rows[b]?.kv !== kv) this.rows[b] = { kv, synced: new Int32Array(this.numLayers).fill(-1), epochs: new Int32Array(this.numLayers) };
    }
    this.rows.length = B;
    let early = Math.max(1, Math.ceil(this.numLayers / EARLY_SPREAD));
    const mayGrowEarly = (): boolean => early-- > 0;
    const out: (GatheredLayer | null)[] = [];
    for (let l = 0; l < this.numLayers; l++) out.push(this.syncLayer(l, kvs, mayGrowEarly));
    return out;
  }

  private syncLayer(l: number, kvs: readonly SequenceKv[], mayGrowEarly: () => boolean): GatheredLayer | null {
    const B = kvs.length;
    const KV = this.numKvHeads;
    const D = this.headDim;
    let longest = 0;
    for (const kv of kvs) longest = Math.max(longest, kv.length(l));
    if (longest === 0) return null;
    const layer = this.layers[l];
    if (!layer) throw new Error(`GatheredBatch: no layer ${l}`);
    const C0 = layer.capacity;
    // Forced: a row outgrew C, or C is far longer than the rows (wasted attention work). Early: C is
    // about to be outgrown; a few layers per step, so the whole batch is not moved in one step.
    const forced = longest > C0 || C0 > roundToBlock(longest) + SPARE_BLOCKS * KV_BLOCK;
    const C = forced || (C0 - longest < EARLY_HEADROOM && mayGrowEarly()) ? roundToBlock(longest) + KV_BLOCK : C0;
    const need = B * KV * C * D;
    const room = rowsFor(B, this.maxRows) * KV * C * D;
    // Too small, or more than twice what the batch needs (rows left, contexts were evicted): a new
    // buffer. Early: no room for another row while the batch may still gain one (at once when the
    // layer is re-laid out anyway).
    const full = B < this.maxRows && layer.keys.length < (B + 1) * KV * C * D;
    if (layer.keys.length < need || layer.keys.length > 2 * room || (full && (C !== C0 || mayGrowEarly()))) this.reallocate(l, layer, C, room);
    else if (C !== C0) this.moveRows(layer, layer.keys, layer.values, l, C0, C);
    layer.capacity = C;
    for (let b = 0; b < B; b++) {
      const row = this.rows[b];
      if (!row) throw new Error('unreachable: a row was not set');
      const kv = row.kv;
      const len = kv.length(l);
      const synced = row.synced[l] ?? -1;
      const from = synced < 0 ? 0 : Math.min(synced, len, kv.rewrittenSince(l, row.epochs[l] ?? 0));
      if (from < len) {
        const cap = kv.capacity(l);
        const kb = kv.keyBuffer(l);
        const vb = kv.valueBuffer(l);
        for (let h = 0; h < KV; h++) {
          const dst = ((b * KV + h) * C + from) * D;
          copyKv(layer.keys, dst, kb, (h * cap + from) * D, (len - from) * D);
          copyKv(layer.values, dst, vb, (h * cap + from) * D, (len - from) * D);
        }
        this.copiedEntries += len - from;
      }
      row.synced[l] = len;
      row.epochs[l] = kv.rewriteEpoch(l);
    }
    return { keys: layer.keys.subarray(0, need), values: layer.values.subarray(0, need), capacity: C };
  }

  /** A new buffer for layer l with room for `elements`, laid out at capacity C, holding what the rows had copied. */
  private reallocate(l: number, layer: LayerBuffers, C: number, elements: number): void {
    const keys = allocKv(this.dtype, elements);
    const values = allocKv(this.dtype, elements);
    if (layer.capacity > 0) this.moveRows(layer, keys, values, l, layer.capacity, C);
    layer.keys = keys;
    layer.values = values;
  }

  /**
   * Moves every row's copied entries of layer l from the layout at capacity `from` in the
   * layer's buffers to the layout at capacity `to` in `keys`/`values` (the same buffers: in
   * place, rows taken in the order that never overwrites one not yet moved). A row's entries
   * beyond `to` (a sequence shortened by eviction) are left for its re-copy.
   */
  private moveRows(layer: LayerBuffers, keys: KvArray, values: KvArray, l: number, from: number, to: number): void {
    const KV = this.numKvHeads;
    const D = this.headDim;
    const inPlace = keys === layer.keys;
    const slots = this.rows.length * KV;
    for (let k = 0; k < slots; k++) {
      // Growing in place, the last row first (each moves up); shrinking, the first row first.
      const slot = inPlace && to > from ? slots - 1 - k : k;
      const row = this.rows[Math.floor(slot / KV)];
      if (!row) throw new Error('unreachable: a row was not set');
      const n = Math.min(row.synced[l] ?? -1, to);
      if (n < 0) continue;
      row.synced[l] = n;
      if (inPlace) {
        layer.keys.copyWithin(slot * to * D, slot * from * D, (slot * from + n) * D);
        layer.values.copyWithin(slot * to * D, slot * from * D, (slot * from + n) * D);
      } else {
        copyKv(keys, slot * to * D, layer.keys, slot * from * D, n * D);
        copyKv(values, slot * to * D, layer.values, slot * from * D, n * D);
      }
    }
  }
}
