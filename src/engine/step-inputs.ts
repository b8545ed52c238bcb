/**
 * Builds decoder inputs from sequences' KV caches: one prefill chunk of one
 * sequence, or one decode step for a batch of sequences (padded to the longest
 * past; padding is masked out by the attention bias). Scratch buffers are kept
 * and reused across steps, so steady-state decode allocates only when a batch
 * outgrows them.
 */
import type { DecoderStepInputs } from '../runtime/decoder-session.js';
import type { SequenceKv } from '../kv/sequence-kv.js';

const BLOCKED = -Infinity;

export interface MaskRule {
  /** Mistral-style sliding window in positions; null: full causal attention. */
  readonly slidingWindow: number | null;
}

function allowed(keyPos: number, queryPos: number, rule: MaskRule): boolean {
  if (keyPos > queryPos) return false;
  return rule.slidingWindow === null || queryPos - keyPos < rule.slidingWindow;
}

export class StepInputBuilder {
  private readonly pastK: Float32Array[] = [];
  private readonly pastV: Float32Array[] = [];
  private readonly empty: Float32Array[];

  constructor(
    private readonly numLayers: number,
    private readonly rowFloats: number,
    private readonly rule: MaskRule,
  ) {
    this.empty = Array.from({ length: numLayers }, () => new Float32Array(0));
  }

  /**
   * A prefill chunk: `tokens` appended after what `kv` holds, at consecutive
   * positions starting at `startPosition`. `allLogits` asks logits for every
   * new position (scoring), otherwise only the last.
   */
  prefill(kv: SequenceKv, tokens: readonly number[], startPosition: number, allLogits: boolean): DecoderStepInputs {
    const T = tokens.length;
    const P = kv.length;
    const S = P + T;
    const inputIds = new BigInt64Array(T);
    const positionIds = new BigInt64Array(T);
    for (let t = 0; t < T; t++) {
      inputIds[t] = BigInt(tokens[t] ?? 0);
      positionIds[t] = BigInt(startPosition + t);
    }
    const keyPositions = kv.positions;
    const attnBias = new Float32Array(T * S);
    for (let t = 0; t < T; t++) {
      const q = startPosition + t;
      const row = t * S;
      for (let s = 0; s < P; s++) attnBias[row + s] = allowed(keyPositions[s] ?? 0, q, this.rule) ? 0 : BLOCKED;
      for (let s = 0; s < T; s++) attnBias[row + P + s] = allowed(startPosition + s, q, this.rule) ? 0 : BLOCKED;
    }
    const K = allLogits ? T : 1;
    const logitIndex = new BigInt64Array(K);
    for (let k = 0; k < K; k++) logitIndex[k] = BigInt(allLogits ? k : T - 1);
    const pastKeys = P === 0 ? this.empty : Array.from({ length: this.numLayers }, (_, l) => kv.keyView(l));
    const pastValues = P === 0 ? this.empty : Array.from({ length: this.numLayers }, (_, l) => kv.valueView(l));
    return { batch: 1, newTokens: T, past: P, logitCount: K, inputIds, positionIds, attnBias, logitIndex, pastKeys, pastValues };
  }

  /** One new token per sequence. A single sequence is passed without copying its cache. */
  decode(kvs: readonly SequenceKv[], tokens: readonly number[], positions: readonly number[]): DecoderStepInputs {
    const B = kvs.length;
    let P = 0;
    for (const kv of kvs) P = Math.max(P, kv.length);
    const S = P + 1;
    const inputIds = new BigInt64Array(B);
    const positionIds = new BigInt64Array(B);
    const attnBias = new Float32Array(B * S);
    const logitIndex = new BigInt64Array(B);
    for (let b = 0; b < B; b++) {
      const kv = kvs[b];
      if (!kv) throw new Error('unreachable');
      inputIds[b] = BigInt(tokens[b] ?? 0);
      const q = positions[b] ?? 0;
      positionIds[b] = BigInt(q);
      const keyPositions = kv.positions;
      for (let s = 0; s < P; s++) {
        attnBias[b * S + s] = s < kv.length && allowed(keyPositions[s] ?? 0, q, this.rule) ? 0 : BLOCKED;
      }
      attnBias[b * S + P] = 0;
    }
    let pastKeys: readonly Float32Array[];
    let pastValues: readonly Float32Array[];
    const only = kvs[0];
    if (B === 1 && only) {
      pastKeys = P === 0 ? this.empty : Array.from({ length: this.numLayers }, (_, l) => only.keyView(l));
      pastValues = P === 0 ? this.empty : Array.from({ length: this.numLayers }, (_, l) => only.valueView(l));
    } else {
      pastKeys = this.gather(this.pastK, kvs, P, (kv, l) => kv.keyView(l));
      pastValues = this.gather(this.pastV, kvs, P, (kv, l) => kv.valueView(l));
    }
    return { batch: B, newTokens: 1, past: P, logitCount: 1, inputIds, positionIds, attnBias, logitIndex, pastKeys, pastValues };
  }

  private gather(
    scratch: Float32Array[],
    kvs: readonly SequenceKv[],
    P: number,
    view: (kv: SequenceKv, l: number) => Float32Array,
  ): Float32Array[] {
    const rowBlock = P * this.rowFloats;
    const need = kvs.length * rowBlock;
    const out: Float32Array[] = [];
    for (let l = 0; l < this.numLayers; l++) {
      let buf = scratch[l];
      if (!buf || buf.length < need) {
        buf = new Float32Array(Math.ceil(need * 1.25));
        scratch[l] = buf;
      }
      const exact = buf.subarray(0, need);
      kvs.forEach((kv, b) => exact.set(view(kv, l), b * rowBlock));
      out.push(exact);
    }
    return out;
  }
}
