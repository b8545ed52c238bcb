/**
 * Builds decoder inputs from sequences' KV caches: one prefill chunk of one
 * sequence, or one decode step for a batch of sequences. A single sequence's
 * cache is passed to onnxruntime in place (whole capacity, unused entries
 * masked); a batch is gathered into scratch buffers padded to the longest row.
 * Masks are data: causality, padding, sliding windows (Mistral's on every layer,
 * Gemma's per layer), evicted holes.
 */
import { allocKv, copyKv, type KvDtype } from '../kv/kv-dtype.js';
import type { SequenceKv } from '../kv/sequence-kv.js';
import type { DecoderStepInputs, LayerPast } from '../model/step-io.js';
import type { AttentionRestriction } from '../policies/runtime.js';
import { GatheredBatch } from './gathered-batch.js';

const BLOCKED = -Infinity;
/** Decode groups whose gathered past is kept at once (each holds a copy of its sequences' caches). */
const MAX_BATCHES = 4;

export interface MaskRule {
  /** Mistral-style sliding window in positions, on every layer; null: none common to all layers. */
  readonly slidingWindow: number | null;
  /**
   * Per-layer windows (Gemma's sliding and full layers): layer l's past mask uses
   * layerWindows[l]; new_bias carries only slidingWindow, and the graph applies a
   * layer's own window among the new tokens.
   */
  readonly layerWindows?: readonly (number | null)[];
}

function allowed(keyPos: number, queryPos: number, window: number | null): boolean {
  if (keyPos > queryPos) return false;
  return window === null || queryPos - keyPos < window;
}

export interface PrefillOptions {
  /** A policy's restriction (e.g. A-shape: sinks and a recent window): only what some query may read is gathered. */
  readonly restrict?: AttentionRestriction | null;
  /** Logits for every new position (scoring) instead of only the last. */
  readonly allLogits?: boolean;
  /** Query rows of attention to report (stats variant). */
  readonly attnWindow?: number;
}

export class StepInputBuilder {
  /** Each decode group's gathered past, kept across steps (by group key, most recently used last). */
  private readonly batches = new Map<string, GatheredBatch>();
  /** Entries copied by batches no longer kept. */
  private retiredEntries = 0;

  constructor(
    private readonly numLayers: number,
    private readonly numKvHeads: number,
    private readonly headDim: number,
    private readonly rule: MaskRule,
    /** The KV caches' storage dtype: gathered and empty pasts are built in it. */
    private readonly kvDtype: KvDtype = 'fp32',
    /** The most sequences a decode group can hold (the engine's concurrency): bounds a gathered past's spare rows. */
    private readonly maxRows = Infinity,
  ) {}

  /**
   * A prefill chunk: `tokens` appended after what `kv` holds, at consecutive
   * positions starting at `startPosition`.
   */
  prefill(kv: SequenceKv, tokens: readonly number[], startPosition: number, options: PrefillOptions = {}): DecoderStepInputs {
    const T = tokens.length;
    const inputIds = new BigInt64Array(T);
    const positionIds = new BigInt64Array(T);
    for (let t = 0; t < T; t++) {
      inputIds[t] = BigInt(tokens[t] ?? 0);
      positionIds[t] = BigInt(startPosition + t);
    }
    const newBias = new Float32Array(T * T);
    const rs = options.restrict ?? null;
    for (let t = 0; t < T; t++) {
      for (let s = 0; s < T; s++) {
        const ok = allowed(startPosition + s, startPosition + t, this.rule.slidingWindow) && (rs === null || rs.allowed(startPosition + t, startPosition + s));
        newBias[t * T + s] = ok ? 0 : BLOCKED;
      }
    }
    const K = options.allLogits ? T : 1;
    const logitIndex = new BigInt64Array(K);
    for (let k = 0; k < K; k++) logitIndex[k] = BigInt(options.allLogits ? k : T - 1);
    const queryPositions = Array.from({ length: T }, (_, t) => startPosition + t);
    const layers = rs !== null ? this.restrictedLayers(kv, queryPositions, rs) : this.inPlaceLayers(kv, queryPositions);
    return { batch: 1, newTokens: T, logitCount: K, inputIds, positionIds, newBias, logitIndex, layers, attnWindow: options.attnWindow ?? null };
  }

  /**
   * Whole short prompts of several fresh sequences (empty caches) in one pass,
   * padded to the longest; each row's logits come from its own last token.
   */
  prefillFresh(prompts: readonly (readonly number[])[]): DecoderStepInputs {
    const B = prompts.length;
    const T = Math.max(...prompts.map((p) => p.length));
    const inputIds = new BigInt64Array(B * T);
    const positionIds = new BigInt64Array(B * T);
    const newBias = new Float32Array(B * T * T).fill(BLOCKED);
    const logitIndex = new BigInt64Array(B);
    prompts.forEach((p, b) => {
      const n = p.length;
      if (n === 0) throw new Error('prefillFresh: empty prompt');
      for (let t = 0; t < T; t++) {
        inputIds[b * T + t] = BigInt(p[Math.min(t, n - 1)] ?? 0);
        positionIds[b * T + t] = BigInt(t);
        // Padding queries (t >= n) see the real keys too, so no row is all blocked; their outputs are ignored.
        for (let s = 0; s <= Math.min(t, n - 1); s++) {
          if (allowed(s, t, this.rule.slidingWindow)) newBias[(b * T + t) * T + s] = 0;
        }
      }
      logitIndex[b] = BigInt(n - 1);
    });
    const layers = Array.from({ length: this.numLayers }, () => this.emptyLayer(B));
    return { batch: B, newTokens: T, logitCount: 1, inputIds, positionIds, newBias, logitIndex, layers, attnWindow: null };
  }

  /**
   * One new token per sequence. A single sequence is passed without copying its
   * cache; a batch reads the decode group's gathered past (`group`: the group's
   * key; steps of one group copy only what changed since its last step).
   */
  decode(kvs: readonly SequenceKv[], tokens: readonly number[], positions: readonly number[], attnWindow: number | null = null, group = ''): DecoderStepInputs {
    const B = kvs.length;
    const inputIds = new BigInt64Array(B);
    const positionIds = new BigInt64Array(B);
    for (let b = 0; b < B; b++) {
      inputIds[b] = BigInt(tokens[b] ?? 0);
      positionIds[b] = BigInt(positions[b] ?? 0);
    }
    const newBias = new Float32Array(B); // a token always sees itself
    const logitIndex = new BigInt64Array(B);
    const only = kvs[0];
    // A group down to one sequence reads its cache in place: its gathered copy is dropped.
    if (B === 1) this.dropBatch(group);
    const layers = B === 1 && only ? this.inPlaceLayers(only, [positions[0] ?? 0]) : this.gatheredLayers(group, kvs, positions);
    return { batch: B, newTokens: 1, logitCount: 1, inputIds, positionIds, newBias, logitIndex, layers, attnWindow };
  }

  /** Layer l's sliding window: its own when the rule has per-layer windows, else the common one. */
  private windowOf(l: number): number | null {
    const own = this.rule.layerWindows;
    return own !== undefined && l < own.length ? (own[l] ?? null) : this.rule.slidingWindow;
  }

  /**
   * The past mask of one sequence's layer, [heads, rows, capacity]: entries past
   * the layer's length are blocked; with a sliding window, entries too old for
   * a query are blocked per head and per query row.
   */
  private pastMask(kv: SequenceKv, l: number, queryPositions: readonly number[], capacity: number): { bias: Float32Array; heads: number; rows: number } {
    const len = kv.length(l);
    const window = this.windowOf(l);
    const cap = kv.capacity(l);
    const pos = kv.positionBuffer(l);
    const lastQuery = queryPositions[queryPositions.length - 1] ?? 0;
    let windowMatters = false;
    if (window !== null) {
      const firstQuery = queryPositions[0] ?? 0;
      for (let h = 0; h < this.numKvHeads && !windowMatters; h++) {
        for (let i = 0; i < len; i++) {
          if (firstQuery - (pos[h * cap + i] ?? 0) >= window) {
            windowMatters = true;
            break;
          }
        }
      }
    }
    if (!windowMatters) {
      const bias = new Float32Array(capacity);
      bias.fill(BLOCKED, len);
      return { bias, heads: 1, rows: 1 };
    }
    const H = this.numKvHeads;
    const R = queryPositions.length;
    const bias = new Float32Array(H * R * capacity).fill(BLOCKED);
    for (let h = 0; h < H; h++) {
      for (let r = 0; r < R; r++) {
        const q = queryPositions[r] ?? lastQuery;
        const row = (h * R + r) * capacity;
        for (let i = 0; i < len; i++) if (allowed(pos[h * cap + i] ?? 0, q, window)) bias[row + i] = 0;
      }
    }
    return { bias, heads: H, rows: R };
  }

  private inPlaceLayers(kv: SequenceKv, queryPositions: readonly number[]): LayerPast[] {
    const shared = new Map<string, { bias: Float32Array; heads: number; rows: number }>();
    const layers: LayerPast[] = [];
    for (let l = 0; l < this.numLayers; l++) {
      const capacity = kv.capacity(l);
      if (capacity === 0) {
        layers.push(this.emptyLayer(1));
        continue;
      }
      // Layers with the same shape and no window effects share one mask buffer.
      const key = `${capacity}:${kv.length(l)}`;
      const windowed = this.windowOf(l) !== null;
      let mask = windowed ? undefined : shared.get(key);
      if (!mask) {
        mask = this.pastMask(kv, l, queryPositions, capacity);
        if (!windowed) shared.set(key, mask);
      }
      layers.push({ keys: kv.keyBuffer(l), values: kv.valueBuffer(l), capacity, bias: mask.bias, biasHeads: mask.heads, biasRows: mask.rows });
    }
    return layers;
  }

  /** Gathers only the entries some query of the chunk may see (for A-shape: sinks and the recent window): cost flat in the context. */
  private restrictedLayers(kv: SequenceKv, queryPositions: readonly number[], rs: AttentionRestriction): LayerPast[] {
    const KV = this.numKvHeads;
    const D = this.headDim;
    const T = queryPositions.length;
    const first = queryPositions[0] ?? 0;
    const layers: LayerPast[] = [];
    for (let l = 0; l < this.numLayers; l++) {
      const len = kv.length(l);
      const cap = kv.capacity(l);
      const pos = kv.positionBuffer(l);
      const picked: number[] = [];
      for (let e = 0; e < len; e++) {
        const p = pos[e] ?? 0;
        if (rs.reachable(first, p)) picked.push(e);
      }
      if (picked.length === 0) {
        layers.push(this.emptyLayer(1));
        continue;
      }
      const n = picked.length;
      const keys = allocKv(kv.dtype, KV * n * D);
      const values = allocKv(kv.dtype, KV * n * D);
      const kb = kv.keyBuffer(l);
      const vb = kv.valueBuffer(l);
      for (let h = 0; h < KV; h++) {
        picked.forEach((e, i) => {
          copyKv(keys, (h * n + i) * D, kb, (h * cap + e) * D, D);
          copyKv(values, (h * n + i) * D, vb, (h * cap + e) * D, D);
        });
      }
      const bias = new Float32Array(T * n);
      for (let t = 0; t < T; t++) {
        const q = queryPositions[t] ?? 0;
        picked.forEach((e, i) => {
          const p = pos[e] ?? 0;
          bias[t * n + i] = p <= q && rs.allowed(q, p) && allowed(p, q, this.windowOf(l)) ? 0 : BLOCKED;
        });
      }
      layers.push({ keys, values, capacity: n, bias, biasHeads: 1, biasRows: T });
    }
    return layers;
  }

  private gatheredLayers(group: string, kvs: readonly SequenceKv[], positions: readonly number[]): LayerPast[] {
    const B = kvs.length;
    const gathered = this.batchOf(group).sync(kvs);
    const layers: LayerPast[] = [];
    for (let l = 0; l < this.numLayers; l++) {
      const past = gathered[l];
      if (!past) {
        layers.push(this.emptyLayer(B));
        continue;
      }
      const C = past.capacity;
      let bias: Float32Array;
      let heads = 1;
      if (this.windowOf(l) === null) {
        // No window: each row sees its own entries, nothing else.
        bias = new Float32Array(B * C);
        kvs.forEach((kv, b) => bias.fill(BLOCKED, b * C + kv.length(l), (b + 1) * C));
      } else {
        const masks = kvs.map((kv, b) => this.pastMask(kv, l, [positions[b] ?? 0], C));
        heads = Math.max(...masks.map((m) => m.heads));
        bias = new Float32Array(B * heads * C);
        masks.forEach((m, b) => {
          for (let h = 0; h < heads; h++) bias.set(m.bias.subarray((m.heads === 1 ? 0 : h) * C, ((m.heads === 1 ? 0 : h) + 1) * C), (b * heads + h) * C);
        });
      }
      layers.push({ keys: past.keys, values: past.values, capacity: C, bias, biasHeads: heads, biasRows: 1 });
    }
    return layers;
  }

  /** The gathered batch of a decode group (made on first use; the least recently used goes beyond MAX_BATCHES). */
  private batchOf(group: string): GatheredBatch {
    let batch = this.batches.get(group);
    if (batch) this.batches.delete(group);
    else batch = new GatheredBatch(this.numLayers, this.numKvHeads, this.headDim, this.kvDtype, this.maxRows);
    this.batches.set(group, batch);
    for (const key of this.batches.keys()) {
      if (this.batches.size <= MAX_BATCHES) break;
      this.dropBatch(key);
    }
    return batch;
  }

  private dropBatch(group: string): void {
    const batch = this.batches.get(group);
    if (!batch) return;
    this.retiredEntries += batch.copiedEntries;
    this.batches.delete(group);
  }

  /**
   * Drops the gathered pasts of groups not in `active` (the decode groups of
   * the step just run): a group none of whose sequences decodes any more
   * keeps no copy of their caches.
   */
  keepGroups(active: ReadonlySet<string>): void {
    for (const group of [...this.batches.keys()]) if (!active.has(group)) this.dropBatch(group);
  }

  /** Bytes the kept gathered pasts hold: copies of decoding sequences' KV, outside the KV budget. */
  get gatheredBytes(): number {
    let n = 0;
    for (const b of this.batches.values()) n += b.bytes;
    return n;
  }

  /**
   * The order in which a decode group's sequences should fill the batch's rows
   * (indices into `kvs`): the rows they already fill, so a step copies only
   * what changed. Any order is correct; this one is cheapest.
   */
  decodeOrder(group: string, kvs: readonly SequenceKv[]): number[] {
    if (kvs.length <= 1) return kvs.map((_, i) => i);
    return this.batchOf(group).arrange(kvs);
  }

  /** Entries copied into gathered batches so far (all groups): what batched decode steps cost in copying. */
  get gatheredEntries(): number {
    let n = this.retiredEntries;
    for (const b of this.batches.values()) n += b.copiedEntries;
    return n;
  }

  /**
   * onnxruntime mishandles zero-length past dimensions in some reshapes, so an
   * empty past is one blocked dummy entry (exp(-inf) = 0: it contributes nothing).
   */
  private emptyLayer(batch: number): LayerPast {
    const zeros = allocKv(this.kvDtype, batch * this.numKvHeads * this.headDim);
    return { keys: zeros, values: zeros, capacity: 1, bias: new Float32Array(batch).fill(BLOCKED), biasHeads: 1, biasRows: 1 };
  }
}
