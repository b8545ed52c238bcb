/**
 * The runtime of every KV-eviction method (the kvpress base press): folds the
 * graph's attention statistics into the sequence's cache (accumulated
 * attention, the observation window's rows, the newest query's row), decides
 * when to evict (end of prefill, between prefill chunks for streaming methods,
 * every compressEvery decode steps), applies the method's plan to the cache,
 * and handles positions (StreamingLLM re-rotates kept keys into cache
 * positions). A method only writes score(), protect() and its budget.
 */
import { copyKv, kvAsFloat, type KvArray } from '../../kv/kv-dtype.js';
import type { SequenceKv } from '../../kv/sequence-kv.js';
import { layerRope, ropeInverseFrequencies } from '../../model/compile/rope.js';
import type { ModelSpec } from '../../model/spec.js';
import { PolicyError } from '../errors.js';
import type { EvictionMethod, PolicyParams, RuntimeNeeds } from '../method-types.js';
import { rerotateKeys } from '../positions.js';
import type { GroupInputs, PassPhase, PassResult, Phase, PolicyRuntime, PolicyVariant, PrefillShape, RuntimeReport, StatsSlice } from '../runtime.js';
import type { KeepPlan, LayerKvView } from '../types.js';
import { shouldCompress } from './decoding.js';
import { attentionMassRetained } from './retained-mass.js';
import { planKeep } from './select.js';

export class EvictionRuntime implements PolicyRuntime {
  readonly kind = 'kv-eviction' as const;
  readonly batchKey: string = '';
  readonly boundsCache: boolean = true;
  readonly shrinksPrompt: boolean = false;
  readonly batchablePrefill: boolean = false;
  /** Eviction rewrites the cache and scores what prefill attended: nothing to share, nothing to reuse. */
  readonly prefixCacheBypass: string | null = "KV eviction rewrites the cache and needs the prefill's attention statistics";
  readonly beforePrefill: PolicyRuntime['beforePrefill'] = null;
  private decodeSteps = 0;
  private massSum = 0;
  private massCount = 0;
  private evictions = 0;
  /** Per layer [KV, G, W, length] rows of the last pass (compact), or null. */
  private rows: (Float32Array | null)[];
  private rowsWindow = 0;
  private readonly compressEvery: number;
  private readonly usesWindow: boolean;
  private readonly needs: RuntimeNeeds;
  private readonly invFreq: Float32Array;
  private readonly slidingInvFreq: Float32Array | null;

  constructor(
    private readonly method: EvictionMethod,
    private readonly params: PolicyParams,
    private readonly spec: ModelSpec,
  ) {
    if (method.positions === 'rolling' && spec.ropeScaling?.type === 'longrope') {
      // Cached keys carry short or long LongRoPE factors depending on the pass that wrote them, so no single re-rotation is exact.
      // The engine reports a PolicyError from instantiate() as the request's invalid policy.
      throw new PolicyError(`${method.method} renumbers positions (rolling), which this model's longrope RoPE scaling does not allow`);
    }
    this.rows = new Array<Float32Array | null>(spec.numLayers).fill(null);
    // Gemma 3's sliding layers rotate with a RoPE of their own.
    this.slidingInvFreq = spec.slidingRope === null ? null : ropeInverseFrequencies(spec, 'short', spec.slidingRope);
    const every = params['compressEvery'];
    this.compressEvery = typeof every === 'number' ? every : 0;
    this.needs = method.needs(params);
    this.usesWindow = this.needs.observationWindow > 0;
    this.invFreq = ropeInverseFrequencies(spec);
  }

  private get needsStats(): boolean {
    const n = this.needs;
    return n.accumulatedAttention || n.observationWindow > 0 || n.lastQueryAttention;
  }

  /**
   * Decode passes need the statistics graph only while a later decode-time
   * eviction can still use them. A method that evicts at prefill end only (SnapKV,
   * PyramidKV with compressEvery 0) decodes on the plain graph, batched with plain
   * sequences, after its one eviction.
   */
  variant(phase: Phase): PolicyVariant {
    if (!this.needsStats) return 'plain';
    return phase === 'prefill' || this.compressEvery > 0 ? 'stats' : 'plain';
  }

  /**
   * Entries per layer a sequence can hold at once. With a token-count budget the
   * cache is bounded by the budget (PyramidKV's lower layers get up to about
   * twice it) plus what arrives between evictions; otherwise by what it covers.
   */
  reserve(covered: number, chunk: number): number {
    const budget = this.params['budget'];
    if (typeof budget !== 'number' || budget <= 1) return covered;
    const between = Math.max(chunk, this.compressEvery > 0 ? this.compressEvery : covered);
    return Math.min(covered, 2 * budget + this.needs.observationWindow + between + 1);
  }

  /** The observation window (SnapKV, PyramidKV) must fall inside the last chunk. */
  limitChunk(remaining: number, size: number): number {
    const window = this.needs.observationWindow;
    return remaining > size && remaining - size < window ? Math.max(1, remaining - window) : size;
  }

  /** Query rows the graph reports for a prefill pass; the last chunk gets the observation window. */
  prefillShape(lastChunk: boolean): PrefillShape {
    if (!this.needsStats) return { attnWindow: null, restrict: null };
    return { attnWindow: lastChunk && this.usesWindow ? this.needs.observationWindow : 1, restrict: null };
  }

  groupInputs(): GroupInputs {
    return {};
  }

  /** Folds the pass's statistics in, then evicts when the phase and the method call for it. */
  afterPass(kv: SequenceKv, pass: PassResult): void {
    if (pass.stats !== null) this.observe(kv, pass.stats);
    if (pass.phase === 'decode') this.decodeSteps += 1;
    const due =
      pass.phase === 'prefill-end' ||
      (pass.phase === 'prefill-chunk' && !this.usesWindow) ||
      (pass.phase === 'decode' && shouldCompress(this.decodeSteps, { compressEvery: this.compressEvery }));
    if (due) this.evict(kv, pass.phase, pass.contextTokens);
  }

  report(): RuntimeReport {
    return { promptTokens: null, compressionRatio: null, attentionMassRetained: this.attentionMassRetained, details: { evictions: this.evictions } };
  }

  /** Folds one pass's statistics into the sequence (after its entries were appended to `kv`). */
  private observe(kv: SequenceKv, s: StatsSlice): void {
    const KV = this.spec.numKvHeads;
    const G = this.spec.numHeads / KV;
    const accumulate = this.needs.accumulatedAttention;
    if (accumulate) kv.enableAccumulator();
    for (let l = 0; l < this.spec.numLayers; l++) {
      const C = s.pastWidth[l] ?? 0;
      const before = s.lengthBefore[l] ?? 0;
      const T = s.newTokens;
      const S = C + T;
      const len = kv.length(l);
      const col = (entry: number): number => (entry < before ? entry : C + (entry - before));
      if (accumulate) {
        const acc = kv.accumulatorBuffer(l);
        const sums = s.attnSum[l];
        if (acc && sums) {
          const cap = kv.capacity(l);
          for (let h = 0; h < KV; h++) {
            const src = (s.row * KV + h) * S;
            for (let e = 0; e < len; e++) acc[h * cap + e] = (acc[h * cap + e] ?? 0) + (sums[src + col(e)] ?? 0);
          }
        }
      }
      const rowsOut = s.attnRows[l];
      if (rowsOut) {
        const W = Math.min(s.window, T);
        const compact = new Float32Array(KV * G * W * len);
        for (let h = 0; h < KV; h++) {
          for (let g = 0; g < G; g++) {
            for (let w = 0; w < W; w++) {
              const src = (((s.row * KV + h) * G + g) * W + w) * S;
              const dst = ((h * G + g) * W + w) * len;
              for (let e = 0; e < len; e++) compact[dst + e] = rowsOut[src + col(e)] ?? 0;
            }
          }
        }
        this.rows[l] = compact;
        this.rowsWindow = W;
      }
    }
  }

  private view(kv: SequenceKv, l: number): LayerKvView {
    const KV = this.spec.numKvHeads;
    const D = this.spec.headDim;
    const len = kv.length(l);
    const cap = kv.capacity(l);
    const compactHeads = (buf: Float32Array | Int32Array | null): Float32Array | Int32Array | null => {
      if (!buf) return null;
      const out = buf instanceof Int32Array ? new Int32Array(KV * len) : new Float32Array(KV * len);
      for (let h = 0; h < KV; h++) out.set(buf.subarray(h * cap, h * cap + len), h * len);
      return out;
    };
    const timeMajor = (buf: KvArray): Float32Array => {
      const out = new Float32Array(len * KV * D);
      for (let h = 0; h < KV; h++) {
        for (let e = 0; e < len; e++) copyKv(out, (e * KV + h) * D, buf, (h * cap + e) * D, D);
      }
      return out;
    };
    const rows = this.rows[l] ?? null;
    const rowsValid = rows !== null && rows.length === KV * (this.spec.numHeads / KV) * this.rowsWindow * len;
    let keys: Float32Array | null = null;
    let values: Float32Array | null = null;
    const positions = compactHeads(kv.positionBuffer(l)) as Int32Array;
    const accumulated = this.needs.accumulatedAttention ? (compactHeads(kv.accumulatorBuffer(l)) as Float32Array | null) : null;
    return {
      layer: l,
      numLayers: this.spec.numLayers,
      numKvHeads: KV,
      groupSize: this.spec.numHeads / KV,
      headDim: D,
      length: len,
      positions,
      // Keys and values are copied to the view's layout only for methods that read them.
      get keys(): Float32Array {
        keys ??= timeMajor(kv.keyBuffer(l));
        return keys;
      },
      get values(): Float32Array {
        values ??= timeMajor(kv.valueBuffer(l));
        return values;
      },
      accumulatedAttention: accumulated,
      windowAttention: this.usesWindow && rowsValid ? rows : null,
      window: this.usesWindow && rowsValid ? this.rowsWindow : 0,
      lastQueryAttention: this.needs.lastQueryAttention && rowsValid ? lastRow(rows, KV * (this.spec.numHeads / KV), this.rowsWindow, len) : null,
    };
  }

  private evict(kv: SequenceKv, phase: PassPhase, contextTokens: number): void {
    const rolling = this.method.positions === 'rolling';
    let evicted = false;
    for (let l = 0; l < this.spec.numLayers; l++) {
      const view = this.view(kv, l);
      if (phase === 'prefill-end' && this.usesWindow && view.windowAttention === null) continue;
      // SnapKV's reference code leaves a prompt no longer than the observation window uncompressed.
      if (this.usesWindow && view.length <= this.needs.observationWindow) continue;
      const plan = planWithMethod(this.method, this.params, view, contextTokens);
      if (!plan) continue;
      const mass = attentionMassRetained(view, plan);
      if (mass !== null) {
        this.massSum += mass;
        this.massCount += 1;
      }
      kv.retain(l, plan);
      evicted = true;
      // Statistics rows no longer line up with the entries.
      this.rows[l] = null;
      if (rolling) this.renumber(kv, l);
    }
    if (evicted) this.evictions += 1;
    if (rolling && evicted) kv.nextPosition = kv.maxLength;
  }

  /** StreamingLLM: kept entries take positions 0..n-1; keys are re-rotated to match (not on NoPE layers). */
  private renumber(kv: SequenceKv, l: number): void {
    const rope = layerRope(this.spec, l);
    const invFreq = rope !== null && rope === this.spec.slidingRope && this.slidingInvFreq !== null ? this.slidingInvFreq : this.invFreq;
    const D = this.spec.headDim;
    const len = kv.length(l);
    const cap = kv.capacity(l);
    const stored = kv.keyBuffer(l);
    // A float16 cache is re-rotated in float32 and written back (one rounding, as when the keys were stored).
    const keys = kvAsFloat(stored);
    const pos = kv.positionBuffer(l);
    const to = Int32Array.from({ length: len }, (_, i) => i);
    let firstMoved = len;
    for (let h = 0; h < this.spec.numKvHeads; h++) {
      const slice = keys.subarray(h * cap * D, (h * cap + len) * D);
      const from = pos.slice(h * cap, h * cap + len);
      const moved = from.findIndex((p, i) => p !== i);
      if (moved >= 0) firstMoved = Math.min(firstMoved, moved);
      if (rope !== null) rerotateKeys(slice, 1, D, from, to, invFreq, slice);
      pos.set(to, h * cap);
    }
    if (keys !== stored) copyKv(stored, 0, keys, 0, keys.length);
    if (firstMoved < len) kv.markRewritten(l, firstMoved);
  }

  /** Mean attention mass kept by evictions so far; 1 when nothing was evicted; null when unmeasured. */
  private get attentionMassRetained(): number | null {
    if (this.evictions === 0) return 1;
    return this.massCount > 0 ? this.massSum / this.massCount : null;
  }
}

/** [heads*G, W, len] -> the last of the W rows: [heads*G, len]. */
function lastRow(rows: Float32Array, headRows: number, window: number, len: number): Float32Array {
  const out = new Float32Array(headRows * len);
  for (let r = 0; r < headRows; r++) out.set(rows.subarray((r * window + window - 1) * len, (r * window + window) * len), r * len);
  return out;
}

/** Which entries each KV head keeps after one eviction of one layer; null when it fits its budget (plan.ts looks the method up by policy). */
export function planWithMethod(method: EvictionMethod, params: PolicyParams, view: LayerKvView, contextTokens: number): KeepPlan | null {
  const keep = Math.min(view.length, method.layerKeep(params, view, contextTokens));
  if (keep >= view.length) return null;
  const scores = method.score(view, params);
  return planKeep(scores, view, keep, method.protect(params, keep));
}
