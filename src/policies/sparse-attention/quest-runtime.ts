/**
 * Quest's runtime for one sequence: per layer and KV head, the per-channel min
 * and max of each page's keys, kept up to date as entries are appended, and the
 * per-step selection size. The selection itself runs inside the decoder graph's
 * quest variant (it needs the current query); this feeds it. Prefill is dense
 * on the plain graph; decode runs on the quest graph, batched by page size.
 */
import { fromHalf } from '../../kv/kv-dtype.js';
import type { SequenceKv } from '../../kv/sequence-kv.js';
import type { QuestInputs, QuestLayerInputs } from '../../model/step-io.js';
import type { ModelSpec } from '../../model/spec.js';
import { resolveBudget } from '../budget.js';
import { PolicyError } from '../errors.js';
import type { GroupInputs, GroupMember, PassResult, Phase, PolicyRuntime, PolicyVariant, PrefillShape, RuntimeReport } from '../runtime.js';
import type { QuestParams } from './quest.js';

interface LayerBounds {
  /** [KV, pageCap, D] */
  min: Float32Array;
  max: Float32Array;
  pageCap: number;
  /** Entries folded in so far. */
  covered: number;
  /** [KV, pageCap] page bias for the graph (0 own, +inf newest, -inf unused), valid for `biasPages` pages. */
  bias: Float32Array;
  biasPages: number;
}

export class QuestRuntime implements PolicyRuntime {
  readonly kind = 'sparse-attention' as const;
  readonly boundsCache: boolean = false;
  readonly shrinksPrompt: boolean = false;
  readonly batchablePrefill: boolean = true;
  /** Prefill is dense and the cache stays whole: the prefix KV is full attention's. */
  readonly prefixCacheBypass: string | null = null;
  readonly beforePrefill: PolicyRuntime['beforePrefill'] = null;
  private readonly layers: LayerBounds[];
  private readonly KV: number;
  private readonly D: number;
  private selectedSum = 0;
  private attendedSum = 0;

  constructor(
    readonly params: QuestParams,
    private readonly spec: ModelSpec,
  ) {
    this.KV = spec.numKvHeads;
    this.D = spec.headDim;
    this.layers = Array.from({ length: spec.numLayers }, () => ({
      min: new Float32Array(0),
      max: new Float32Array(0),
      pageCap: 0,
      covered: 0,
      bias: new Float32Array(0),
      biasPages: -1,
    }));
  }

  get pageSize(): number {
    return this.params.pageSize;
  }

  get batchKey(): string {
    return `page-${this.params.pageSize}`;
  }

  variant(phase: Phase): PolicyVariant {
    return phase === 'decode' ? 'quest' : 'plain';
  }

  reserve(covered: number, _chunk: number): number {
    return covered;
  }

  limitChunk(_remaining: number, size: number): number {
    return size;
  }

  prefillShape(_lastChunk: boolean): PrefillShape {
    return { attnWindow: null, restrict: null };
  }

  groupInputs(members: readonly GroupMember[]): GroupInputs {
    const states = members.map((m) => {
      if (!(m.runtime instanceof QuestRuntime)) throw new PolicyError('quest: a decode group mixes Quest and other runtimes');
      return m.runtime;
    });
    return {
      quest: questInputs(
        states,
        members.map((m) => m.kv),
        this.spec.numLayers,
        this.spec.numKvHeads,
        this.spec.headDim,
      ),
    };
  }

  /** Folds the entries the pass appended into the page bounds. */
  afterPass(kv: SequenceKv, _pass: PassResult): void {
    this.update(kv);
  }

  report(): RuntimeReport {
    return { promptTokens: null, compressionRatio: null, attentionMassRetained: null, details: { attendedRatio: this.attendedRatio } };
  }

  /** Folds newly appended entries of every layer into the page bounds. */
  update(kv: SequenceKv): void {
    const ps = this.params.pageSize;
    const { KV, D } = this;
    for (let l = 0; l < this.spec.numLayers; l++) {
      const b = this.layers[l];
      if (!b) continue;
      const len = kv.length(l);
      if (len < b.covered) throw new Error('quest: the cache shrank under Quest (Quest never evicts)');
      const pages = Math.ceil(len / ps);
      if (pages > b.pageCap) this.grow(b, Math.max(pages, Math.ceil(b.pageCap * 1.5), 8));
      const cap = kv.capacity(l);
      const keys = kv.keyBuffer(l);
      const half = keys instanceof Uint16Array;
      for (let e = b.covered; e < len; e++) {
        const p = Math.floor(e / ps);
        const fresh = e % ps === 0;
        for (let h = 0; h < KV; h++) {
          const src = (h * cap + e) * D;
          const dst = (h * b.pageCap + p) * D;
          for (let c = 0; c < D; c++) {
            const raw = keys[src + c] ?? 0;
            const v = half ? fromHalf(raw) : raw;
            if (fresh || v < (b.min[dst + c] ?? 0)) b.min[dst + c] = v;
            if (fresh || v > (b.max[dst + c] ?? 0)) b.max[dst + c] = v;
          }
        }
      }
      b.covered = len;
    }
  }

  private grow(b: LayerBounds, pageCap: number): void {
    const { KV, D } = this;
    const min = new Float32Array(KV * pageCap * D);
    const max = new Float32Array(KV * pageCap * D);
    for (let h = 0; h < KV; h++) {
      min.set(b.min.subarray(h * b.pageCap * D, (h + 1) * b.pageCap * D), h * pageCap * D);
      max.set(b.max.subarray(h * b.pageCap * D, (h + 1) * b.pageCap * D), h * pageCap * D);
    }
    b.min = min;
    b.max = max;
    b.pageCap = pageCap;
    b.bias = new Float32Array(KV * pageCap);
    b.biasPages = -1;
  }

  /**
   * Layer l's inputs in place, for a batch of one: the bounds buffers are
   * already [1, KV, pageCap, D]; unused pages are blocked by the bias, which is
   * rewritten only when the page count changes. Nothing is copied per step.
   */
  layerInPlace(l: number, length: number): QuestLayerInputs {
    const b = this.layers[l];
    if (!b) throw new Error(`quest: no layer ${l}`);
    const own = Math.ceil(length / this.params.pageSize);
    if (b.biasPages !== own) {
      for (let h = 0; h < this.KV; h++) {
        const row = h * b.pageCap;
        b.bias.fill(0, row, row + own);
        b.bias.fill(-Infinity, row + own, row + b.pageCap);
        if (own > 0) b.bias[row + own - 1] = Infinity;
      }
      b.biasPages = own;
    }
    const k = this.pagesToAttend(l, length);
    this.selectedSum += Math.min(length, k * this.params.pageSize);
    this.attendedSum += length;
    return { min: b.min, max: b.max, bias: b.bias, pages: b.pageCap, k };
  }

  /** Pages layer l attends this step: all for the dense first layers, else the budget plus the newest page. */
  pagesToAttend(l: number, length: number): number {
    const pages = Math.ceil(length / this.params.pageSize);
    if (l < this.params.denseLayers) return pages;
    const wanted =
      this.params.topPages !== undefined ? this.params.topPages + 1 : Math.ceil(resolveBudget(this.params.budget ?? 1, length) / this.params.pageSize);
    return Math.max(1, Math.min(pages, wanted));
  }

  /**
   * This sequence's rows of the graph's Quest inputs for layer l, padded to
   * `pages` (padding pages blocked), written at row b of [B, KV, pages, ...].
   */
  writeLayer(l: number, length: number, pages: number, b: number, out: { min: Float32Array; max: Float32Array; bias: Float32Array }): number {
    const bounds = this.layers[l];
    if (!bounds) throw new Error(`quest: no layer ${l}`);
    const { KV, D } = this;
    const own = Math.ceil(length / this.params.pageSize);
    for (let h = 0; h < KV; h++) {
      const row = (b * KV + h) * pages;
      out.min.set(bounds.min.subarray(h * bounds.pageCap * D, (h * bounds.pageCap + own) * D), row * D);
      out.max.set(bounds.max.subarray(h * bounds.pageCap * D, (h * bounds.pageCap + own) * D), row * D);
      out.bias.fill(0, row, row + own);
      out.bias.fill(-Infinity, row + own, row + pages);
      // The page holding the newest entries is always attended, as in the paper.
      if (own > 0) out.bias[row + own - 1] = Infinity;
    }
    const k = this.pagesToAttend(l, length);
    this.selectedSum += Math.min(length, k * this.params.pageSize);
    this.attendedSum += length;
    return k;
  }

  /** Share of cached entries attended, over the steps so far (what Quest saves in reads). */
  get attendedRatio(): number {
    return this.attendedSum > 0 ? this.selectedSum / this.attendedSum : 1;
  }
}

/** Builds the graph's Quest inputs for a decode batch of Quest sequences. */
export function questInputs(states: readonly QuestRuntime[], kvs: readonly SequenceKv[], numLayers: number, numKvHeads: number, headDim: number): QuestInputs {
  const first = states[0];
  if (!first) throw new Error('quest: empty batch');
  const pageSize = first.pageSize;
  if (states.some((s) => s.pageSize !== pageSize)) throw new Error('quest: a batch must share one page size');
  const B = states.length;
  const only = kvs[0];
  if (B === 1 && only) {
    return { pageSize, layers: Array.from({ length: numLayers }, (_, l) => first.layerInPlace(l, only.length(l))) };
  }
  const layers: QuestLayerInputs[] = [];
  for (let l = 0; l < numLayers; l++) {
    let pages = 1;
    kvs.forEach((kv) => (pages = Math.max(pages, Math.ceil(kv.length(l) / pageSize))));
    const min = new Float32Array(B * numKvHeads * pages * headDim);
    const max = new Float32Array(B * numKvHeads * pages * headDim);
    const bias = new Float32Array(B * numKvHeads * pages).fill(-Infinity);
    let k = 1;
    states.forEach((s, b) => {
      const kv = kvs[b];
      if (kv) k = Math.max(k, s.writeLayer(l, kv.length(l), pages, b, { min, max, bias }));
    });
    layers.push({ min, max, bias, pages, k: Math.min(k, pages) });
  }
  return { pageSize, layers };
}
