/**
 * One sequence's KV-eviction state inside the engine: folds the runtime's
 * attention statistics into the sequence's cache (accumulated attention, the
 * observation window's rows, the newest query's row), decides when to evict
 * (end of prefill, between prefill chunks for streaming methods, every
 * compressEvery decode steps), applies the method's plan to the cache, and
 * handles positions (StreamingLLM re-rotates kept keys into cache positions).
 */
import type { SequenceKv } from '../kv/sequence-kv.js';
import { layerRope, ropeInverseFrequencies } from '../model/compile/rope.js';
import type { ModelSpec } from '../model/spec.js';
import { shouldCompress } from '../policies/kv-eviction/decoding.js';
import { planLayerEviction } from '../policies/kv-eviction/plan.js';
import { attentionMassRetained } from '../policies/kv-eviction/retained-mass.js';
import type { Policy } from '../policies/policy.js';
import { rerotateKeys } from '../policies/positions.js';
import type { LayerKvView } from '../policies/types.js';
import { EngineError } from './errors.js';

/** Where one sequence's row sits in a forward pass's statistics outputs. */
export interface StatsSlice {
  readonly row: number;
  readonly batch: number;
  /** New tokens per row in that pass. */
  readonly newTokens: number;
  /** Query rows reported per layer (attn_window). */
  readonly window: number;
  /** Per layer: the past width the graph saw (columns before the new tokens). */
  readonly pastWidth: readonly number[];
  /** Per layer: entries the cache held before this pass appended. */
  readonly lengthBefore: readonly number[];
  readonly attnSum: readonly Float32Array[];
  readonly attnRows: readonly Float32Array[];
}

export type EvictionPhase = 'prefill-chunk' | 'prefill-end' | 'decode';

export class EvictionState {
  private decodeSteps = 0;
  private massSum = 0;
  private massCount = 0;
  private evictions = 0;
  /** Per layer [KV, G, W, length] rows of the last pass (compact), or null. */
  private rows: (Float32Array | null)[];
  private rowsWindow = 0;
  private readonly compressEvery: number;
  private readonly usesWindow: boolean;
  private readonly slidingInvFreq: Float32Array | null;

  constructor(
    readonly policy: Policy,
    private readonly spec: ModelSpec,
    private readonly invFreq: Float32Array,
  ) {
    if (policy.positions === 'rolling' && spec.ropeScaling?.type === 'longrope') {
      // Cached keys carry short or long LongRoPE factors depending on the pass that wrote them, so no single re-rotation is exact.
      throw new EngineError('invalid_request', `policy ${policy.name} renumbers positions (rolling), which this model's longrope RoPE scaling does not allow`, { param: 'cap.policy' });
    }
    this.rows = new Array<Float32Array | null>(spec.numLayers).fill(null);
    // Gemma 3's sliding layers rotate with a RoPE of their own.
    this.slidingInvFreq = spec.slidingRope === null ? null : ropeInverseFrequencies(spec, 'short', spec.slidingRope);
    const every = policy.params['compressEvery'];
    this.compressEvery = typeof every === 'number' ? every : 0;
    this.usesWindow = policy.needs.observationWindow > 0;
  }

  get needsStats(): boolean {
    const n = this.policy.needs;
    return n.accumulatedAttention || n.observationWindow > 0 || n.lastQueryAttention;
  }

  /**
   * Whether decode passes need the statistics graph: only while a later decode-time
   * eviction can still use them. A method that evicts at prefill end only (SnapKV,
   * PyramidKV with compressEvery 0) decodes on the plain graph, batched with plain
   * sequences, after its one eviction.
   */
  get needsDecodeStats(): boolean {
    return this.needsStats && this.compressEvery > 0;
  }

  /** Query rows the runtime should report for a pass; `lastPrefillChunk` gets the observation window. */
  rowsWanted(lastPrefillChunk: boolean): number {
    return lastPrefillChunk && this.usesWindow ? this.policy.needs.observationWindow : 1;
  }

  get observationWindow(): number {
    return this.policy.needs.observationWindow;
  }

  /** Folds one pass's statistics into the sequence (after its entries were appended to `kv`). */
  observe(kv: SequenceKv, s: StatsSlice): void {
    const KV = this.spec.numKvHeads;
    const G = this.spec.numHeads / KV;
    const accumulate = this.policy.needs.accumulatedAttention;
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
              const src = ((((s.row * KV + h) * G + g) * W + w) * S);
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

  /** Called after a pass; evicts when the phase and the method call for it. */
  afterPass(kv: SequenceKv, phase: EvictionPhase, contextTokens: number): void {
    if (phase === 'decode') this.decodeSteps += 1;
    const due =
      phase === 'prefill-end' ||
      (phase === 'prefill-chunk' && !this.usesWindow) ||
      (phase === 'decode' && shouldCompress(this.decodeSteps, { compressEvery: this.compressEvery }));
    if (due) this.evict(kv, phase, contextTokens);
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
    const timeMajor = (buf: Float32Array): Float32Array => {
      const out = new Float32Array(len * KV * D);
      for (let h = 0; h < KV; h++) {
        for (let e = 0; e < len; e++) out.set(buf.subarray((h * cap + e) * D, (h * cap + e + 1) * D), (e * KV + h) * D);
      }
      return out;
    };
    const rows = this.rows[l] ?? null;
    const rowsValid = rows !== null && rows.length === KV * (this.spec.numHeads / KV) * this.rowsWindow * len;
    let keys: Float32Array | null = null;
    let values: Float32Array | null = null;
    const positions = compactHeads(kv.positionBuffer(l)) as Int32Array;
    const accumulated = this.policy.needs.accumulatedAttention ? (compactHeads(kv.accumulatorBuffer(l)) as Float32Array | null) : null;
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
      lastQueryAttention: this.policy.needs.lastQueryAttention && rowsValid && rows ? lastRow(rows, KV * (this.spec.numHeads / KV), this.rowsWindow, len) : null,
    };
  }

  private evict(kv: SequenceKv, phase: EvictionPhase, contextTokens: number): void {
    const rolling = this.policy.positions === 'rolling';
    let evicted = false;
    for (let l = 0; l < this.spec.numLayers; l++) {
      const view = this.view(kv, l);
      if (phase === 'prefill-end' && this.usesWindow && view.windowAttention === null) continue;
      // SnapKV's reference code leaves a prompt no longer than the observation window uncompressed.
      if (this.usesWindow && view.length <= this.policy.needs.observationWindow) continue;
      const plan = planLayerEviction(this.policy, view, contextTokens);
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
    const keys = kv.keyBuffer(l);
    const pos = kv.positionBuffer(l);
    const to = Int32Array.from({ length: len }, (_, i) => i);
    for (let h = 0; h < this.spec.numKvHeads; h++) {
      const slice = keys.subarray(h * cap * D, (h * cap + len) * D);
      const from = pos.slice(h * cap, h * cap + len);
      if (rope !== null) rerotateKeys(slice, 1, D, from, to, invFreq, slice);
      pos.set(to, h * cap);
    }
  }

  get evictionCount(): number {
    return this.evictions;
  }

  /** Mean attention mass kept by evictions so far; 1 when nothing was evicted; null when unmeasured. */
  get attentionMassRetained(): number | null {
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
