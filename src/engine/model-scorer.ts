/**
 * TokenScorer over a compiled decoder: chunked prefill with logits for every
 * position. Sequences longer than the window are scored in overlapping
 * windows (each window starts again at position 0, so RoPE never leaves the
 * trained range). The KV of the last few sequences is kept so that a call
 * sharing a prefix with an earlier one only runs the new tokens: LLMLingua's
 * iterative compression re-scores "compressed prefix + next window" and would
 * otherwise pay the prefix again on every iteration.
 */
import { logSumExp } from './log-softmax.js';
import { StepInputBuilder } from './step-inputs.js';
import { KvPool } from '../kv/kv-pool.js';
import { kvBytesPerToken, roundToBlock, SequenceKv, type KvShape } from '../kv/sequence-kv.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { compileModel } from '../model/compile/compile-model.js';
import type { WeightDtype } from '../model/compile/decoder-graph.js';
import type { ModelSpec } from '../model/spec.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import { DecoderSession } from '../runtime/decoder-session.js';
import type { ModelRunner } from '../runtime/model-runner.js';
import type { TokenScorer } from '../policies/compression/scorer.js';
import { checkTokenIds } from '../policies/compression/segments.js';

export interface ModelScorerOptions {
  /** Longest sequence scored in one pass; default and maximum: the model's max_position_embeddings. */
  readonly windowTokens?: number;
  /** Context carried into the next window when a sequence is longer than one; default half the window. */
  readonly overlapTokens?: number;
  /** Tokens per forward pass; default bounds the logits and the attention mask to 16M floats each. */
  readonly chunkTokens?: number;
  /** Where KV memory is accounted; default a private pool without a limit. */
  readonly pool?: KvPool;
  /** Sequences whose KV is kept for prefix reuse; 0 disables reuse. Default 2 (LongLLMLingua alternates two). */
  readonly cacheSlots?: number;
}

export interface OpenScorerOptions extends ModelScorerOptions {
  /** Compiled-graph cache directory (the server's .cache/compiled). */
  readonly cacheDir: string;
  readonly weightDtype?: WeightDtype;
  readonly threads?: number;
}

interface CacheSlot {
  tokens: number[];
  logprobs: Float32Array;
  kv: SequenceKv;
}

/** Counters for benchmarks and the compression metrics. */
export interface ScorerStats {
  readonly calls: number;
  /** Tokens actually run through the model. */
  readonly forwardTokens: number;
  /** Tokens whose KV came from an earlier call. */
  readonly reusedTokens: number;
}

const FLOAT_BUDGET = 1 << 24;
const RESERVE_ROUND = 256;

export class ModelScorer implements TokenScorer {
  readonly vocabSize: number;
  readonly windowTokens: number;
  readonly overlapTokens: number;
  readonly chunkTokens: number;
  /** The scorer model's tokenizer when opened from a directory, else null. */
  readonly tokenizer: TextTokenizer | null;
  private readonly inputs: StepInputBuilder;
  private readonly shape: KvShape;
  private readonly pool: KvPool;
  private readonly cacheSlots: number;
  private slots: CacheSlot[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private counters = { calls: 0, forwardTokens: 0, reusedTokens: 0 };

  constructor(
    private readonly runner: ModelRunner,
    spec: ModelSpec,
    options: ModelScorerOptions = {},
    private readonly ownsRunner = false,
    tokenizer: TextTokenizer | null = null,
  ) {
    this.vocabSize = spec.vocabSize;
    this.tokenizer = tokenizer;
    const maxWindow = spec.maxPositionEmbeddings;
    this.windowTokens = positiveInt(options.windowTokens ?? maxWindow, 'windowTokens');
    if (this.windowTokens < 2 || this.windowTokens > maxWindow) {
      throw new RangeError(`ModelScorer: windowTokens must be in [2, ${maxWindow}] (the model's max_position_embeddings), got ${this.windowTokens}`);
    }
    this.overlapTokens = Math.trunc(options.overlapTokens ?? this.windowTokens / 2);
    if (!Number.isInteger(this.overlapTokens) || this.overlapTokens < 1 || this.overlapTokens >= this.windowTokens) {
      throw new RangeError(`ModelScorer: overlapTokens must be an integer in [1, windowTokens), got ${String(options.overlapTokens)}`);
    }
    const byFloats = Math.floor(FLOAT_BUDGET / Math.max(spec.vocabSize, this.windowTokens));
    this.chunkTokens = positiveInt(options.chunkTokens ?? Math.max(16, Math.min(512, byFloats)), 'chunkTokens');
    this.cacheSlots = Math.trunc(options.cacheSlots ?? 2);
    if (!Number.isInteger(this.cacheSlots) || this.cacheSlots < 0)
      throw new RangeError(`ModelScorer: cacheSlots must be an integer >= 0, got ${String(options.cacheSlots)}`);
    this.shape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim };
    this.pool = options.pool ?? new KvPool(Number.POSITIVE_INFINITY);
    this.inputs = new StepInputBuilder(spec.numLayers, spec.numKvHeads, spec.headDim, { slidingWindow: spec.slidingWindow, layerWindows: spec.layerWindows });
  }

  /** Loads and compiles a checkpoint directory into a scorer that owns its session. */
  static async open(dir: string, options: OpenScorerOptions): Promise<ModelScorer> {
    const checkpoint = loadCheckpoint(dir);
    const compiled = compileModel(checkpoint, { cacheDir: options.cacheDir, weightDtype: options.weightDtype ?? 'fp32' });
    const session = await DecoderSession.create(compiled.decoderPath, checkpoint.spec, { threads: options.threads ?? 1 });
    return new ModelScorer(session, checkpoint.spec, options, true, checkpoint.tokenizer);
  }

  get stats(): ScorerStats {
    return { ...this.counters };
  }

  /** Calls are serialized: the cached KV is shared state. */
  logprobs(tokens: readonly number[]): Promise<Float32Array> {
    const run = this.queue.then(() => this.score(tokens));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Releases the KV kept for prefix reuse. */
  clearCache(): void {
    for (const s of this.slots) s.kv.release();
    this.slots = [];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    this.clearCache();
    if (this.ownsRunner) await this.runner.release();
  }

  private async score(tokens: readonly number[]): Promise<Float32Array> {
    if (this.closed) throw new Error('ModelScorer: used after close()');
    checkTokenIds(tokens, this.vocabSize, 'ModelScorer.logprobs');
    this.counters.calls++;
    const n = tokens.length;
    const out = new Float32Array(n).fill(Number.NaN);
    if (n < 2) return out;
    if (n <= this.windowTokens) {
      await this.scoreCached(tokens, out);
      return out;
    }
    // Longer than the window: fresh windows, each keeping `overlap` tokens of context.
    let scored = 0;
    let start = 0;
    while (scored < n) {
      const end = Math.min(n, start + this.windowTokens);
      const kv = this.newKv(end - start);
      try {
        await this.prefillScore(kv, tokens, start, end, start, Math.max(scored, start + 1), out);
      } finally {
        kv.release();
      }
      scored = end;
      start = end - this.overlapTokens;
    }
    return out;
  }

  private async scoreCached(tokens: readonly number[], out: Float32Array): Promise<void> {
    const n = tokens.length;
    let best: CacheSlot | null = null;
    let common = 0;
    for (const slot of this.slots) {
      const l = commonPrefix(slot.tokens, tokens);
      if (l > common) {
        common = l;
        best = slot;
      }
    }
    if (best !== null && common === n) {
      out.set(best.logprobs.subarray(1, n), 1);
      this.touch(best);
      return;
    }
    // Logits at position common-1 predict token `common`, so the run restarts there.
    const reuse = Math.max(0, common - 1);
    let slot: CacheSlot;
    // A slot whose cache holds fewer entries than the shared prefix (seen with LongLLMLingua at rate 0.5,
    // root cause not found) is not reused: recomputing is correct, retaining past its length is not.
    if (best !== null && reuse > 0 && best.kv.reservedTokens >= n && best.kv.minLength >= reuse) {
      slot = best;
      const prefix = Int32Array.from({ length: reuse }, (_, i) => i);
      const perHead = Array.from({ length: this.shape.numKvHeads }, () => prefix);
      for (let l = 0; l < this.shape.numLayers; l++) slot.kv.retain(l, perHead);
      slot.kv.nextPosition = reuse;
      out.set(slot.logprobs.subarray(1, common), 1);
      this.counters.reusedTokens += reuse;
    } else {
      slot = { tokens: [], logprobs: new Float32Array(0), kv: this.newKv(Math.min(this.windowTokens, roundUp(n))) };
      if (this.cacheSlots > 0) this.slots.push(slot);
    }
    try {
      await this.prefillScore(slot.kv, tokens, reuse, n, 0, reuse + 1, out);
    } catch (err) {
      this.drop(slot);
      throw err;
    }
    if (this.cacheSlots === 0) {
      slot.kv.release();
      return;
    }
    slot.tokens = [...tokens];
    slot.logprobs = out.slice();
    this.touch(slot);
    while (this.slots.length > this.cacheSlots) {
      const old = this.slots.pop();
      old?.kv.release();
    }
  }

  /**
   * Prefills tokens[from, to) after what `kv` holds, at positions from - base
   * onward, writing out[p] for every p in [scoreFrom, to).
   */
  private async prefillScore(
    kv: SequenceKv,
    tokens: readonly number[],
    from: number,
    to: number,
    base: number,
    scoreFrom: number,
    out: Float32Array,
  ): Promise<void> {
    const V = this.vocabSize;
    for (let c = from; c < to; c += this.chunkTokens) {
      const e = Math.min(to, c + this.chunkTokens);
      const chunk = tokens.slice(c, e);
      const step = await this.runner.run(this.inputs.prefill(kv, chunk, c - base, { allLogits: true }));
      this.counters.forwardTokens += chunk.length;
      const positions = Int32Array.from({ length: chunk.length }, (_, i) => c - base + i);
      kv.append(step.presentKeys, step.presentValues, 0, chunk.length, positions);
      for (let i = 0; i < chunk.length; i++) {
        const p = c + i + 1;
        if (p < scoreFrom || p >= to) continue;
        out[p] = logSoftmaxAt(step.logits, i * V, V, tokens[p] ?? 0);
      }
    }
  }

  private newKv(wanted: number): SequenceKv {
    const tokens = roundToBlock(wanted);
    const bytes = tokens * kvBytesPerToken(this.shape);
    if (!this.pool.tryReserve(bytes)) {
      // Cached sequences are the only thing this scorer holds; give them back and retry once.
      this.clearCache();
      if (!this.pool.tryReserve(bytes)) {
        throw new Error(`ModelScorer: the KV pool cannot hold ${tokens} tokens (${bytes} bytes) for scoring`);
      }
    }
    return new SequenceKv(this.shape, this.pool, tokens);
  }

  private touch(slot: CacheSlot): void {
    this.slots = [slot, ...this.slots.filter((s) => s !== slot)];
  }

  private drop(slot: CacheSlot): void {
    this.slots = this.slots.filter((s) => s !== slot);
    slot.kv.release();
  }
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`ModelScorer: ${name} must be an integer >= 1, got ${v}`);
  return v;
}

function roundUp(n: number): number {
  return Math.ceil(n / RESERVE_ROUND) * RESERVE_ROUND;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const m = Math.min(a.length, b.length);
  let i = 0;
  while (i < m && a[i] === b[i]) i++;
  return i;
}

/** log softmax(row)[target] for row = logits[offset, offset + V) (logSumExp: float64 sum of float32 weights). */
export function logSoftmaxAt(logits: Float32Array, offset: number, V: number, target: number): number {
  return (logits[offset + target] ?? Number.NEGATIVE_INFINITY) - logSumExp(logits.subarray(offset, offset + V));
}
