/**
 * The engine loop: one step = schedule -> execute -> update, with aborts and
 * admissions handled between steps. Runs on the inference thread (worker), never
 * on the HTTP thread. Continuous batching: every decoding sequence advances one
 * token per step in a single batched forward pass; a sequence still prefilling
 * advances by one chunk per step, so long prompts never stall running streams.
 */
import { KvPool } from '../kv/kv-pool.js';
import { kvBytesPerToken, SequenceKv, type KvShape } from '../kv/sequence-kv.js';
import type { ModelSpec } from '../model/spec.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import type { ModelRunner } from '../runtime/model-runner.js';
import { EngineError, type EngineErrorCode } from './errors.js';
import { Sequence } from './sequence.js';
import { StepInputBuilder } from './step-inputs.js';
import type { GenerateRequest, TokenEvent } from './types.js';

export interface EngineCoreOptions {
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly kvBudgetBytes: number;
  readonly contextLength: number;
  readonly prefillChunk: number;
}

export type CoreOutput =
  | { readonly id: string; readonly event: TokenEvent }
  | { readonly id: string; readonly error: { readonly code: EngineErrorCode; readonly message: string; readonly param: string | null; readonly retryAfterSeconds: number | null } };

export interface CoreStats {
  readonly running: number;
  readonly waiting: number;
  readonly kvBytesUsed: number;
  readonly kvBytesReserved: number;
  readonly kvBytesCapacity: number;
  readonly steps: number;
  /** Time inside onnxruntime, and whole steps, since start (for overhead accounting). */
  readonly forwardMs: number;
  readonly stepMs: number;
  readonly decodeTokens: number;
}

export class EngineCore {
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly byId = new Map<string, Sequence>();
  private readonly pool: KvPool;
  private readonly kvShape: KvShape;
  private readonly inputs: StepInputBuilder;
  private out: CoreOutput[] = [];
  private steps = 0;
  private forwardMs = 0;
  private stepMs = 0;
  private decodeTokens = 0;

  constructor(
    private readonly session: ModelRunner,
    private readonly spec: ModelSpec,
    private readonly tokenizer: TextTokenizer,
    private readonly options: EngineCoreOptions,
  ) {
    this.pool = new KvPool(options.kvBudgetBytes);
    this.kvShape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim };
    this.inputs = new StepInputBuilder(spec.numLayers, spec.numKvHeads, spec.headDim, { slidingWindow: spec.slidingWindow });
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  stats(): CoreStats {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      kvBytesUsed: this.pool.allocatedBytes,
      kvBytesReserved: this.pool.reservedBytes,
      kvBytesCapacity: this.pool.budgetBytes,
      steps: this.steps,
      forwardMs: this.forwardMs,
      stepMs: this.stepMs,
      decodeTokens: this.decodeTokens,
    };
  }

  /** Outputs produced since the last call. */
  drain(): CoreOutput[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  submit(request: GenerateRequest): void {
    try {
      this.validate(request);
      const seq = new Sequence(request, this.spec.vocabSize, this.tokenizer.createDecodeStream({ skipSpecialTokens: true }), this.spec.eosTokenIds, this.options.contextLength);
      if (seq.maxTokensNeeded * kvBytesPerToken(this.kvShape) > this.pool.budgetBytes) {
        throw new EngineError(
          'invalid_request',
          `this request needs ${seq.maxTokensNeeded} tokens of KV cache (${seq.maxTokensNeeded * kvBytesPerToken(this.kvShape)} bytes) but the KV budget is ${this.pool.budgetBytes} bytes; lower max_tokens or the prompt`,
          { param: 'max_tokens' },
        );
      }
      this.byId.set(request.id, seq);
      this.waiting.push(seq);
    } catch (err) {
      this.fail(request.id, err);
    }
  }

  abort(id: string): void {
    const seq = this.byId.get(id);
    if (seq) seq.abortRequested = true;
  }

  private validate(request: GenerateRequest): void {
    if (this.byId.has(request.id)) throw new EngineError('invalid_request', `request id ${request.id} is already in use`);
    const n = request.promptTokens.length;
    if (n === 0) throw new EngineError('invalid_request', 'the prompt is empty (0 tokens)', { param: 'prompt' });
    if (n >= this.options.contextLength) {
      throw new EngineError(
        'context_length_exceeded',
        `This model's maximum context length is ${this.options.contextLength} tokens. However, your request has ${n} prompt tokens, leaving no room to generate.`,
        { param: 'messages' },
      );
    }
    for (const id of request.promptTokens) {
      if (!Number.isInteger(id) || id < 0 || id >= this.spec.vocabSize) {
        throw new EngineError('invalid_request', `token id ${id} is outside the vocabulary [0, ${this.spec.vocabSize})`, { param: 'prompt' });
      }
    }
    if (this.waiting.length >= this.options.maxQueue && this.running.length >= this.options.maxConcurrent) {
      throw new EngineError('queue_full', `the server is at capacity (${this.options.maxConcurrent} running, ${this.waiting.length} waiting)`, {
        retryAfterSeconds: 1,
      });
    }
  }

  private fail(id: string, err: unknown): void {
    const e =
      err instanceof EngineError
        ? err
        : new EngineError('engine_failed', err instanceof Error ? err.message : String(err));
    this.out.push({ id, error: { code: e.code, message: e.message, param: e.param, retryAfterSeconds: e.retryAfterSeconds } });
  }

  /** Runs one engine step. Errors in the forward pass fail the sequences involved, never the loop. */
  async step(): Promise<void> {
    const t0 = performance.now();
    this.reapAborted();
    this.admit();
    const decoding = this.running.filter((s) => s.state === 'decoding');
    if (decoding.length > 0) {
      try {
        await this.decodeStep(decoding);
      } catch (err) {
        for (const s of decoding) this.finishWithError(s, err);
      }
    }
    const prefilling = this.running.find((s) => s.state === 'prefilling');
    if (prefilling) {
      try {
        await this.prefillStep(prefilling);
      } catch (err) {
        this.finishWithError(prefilling, err);
      }
    }
    this.steps += 1;
    this.stepMs += performance.now() - t0;
  }

  private reapAborted(): void {
    for (const list of [this.waiting, this.running]) {
      for (let i = list.length - 1; i >= 0; i--) {
        const s = list[i];
        if (s?.abortRequested) {
          s.finishReason = 'abort';
          this.finish(s, '');
        }
      }
    }
  }

  private admit(): void {
    while (this.waiting.length > 0 && this.running.length < this.options.maxConcurrent) {
      const seq = this.waiting[0];
      if (!seq) break;
      const tokens = seq.maxTokensNeeded;
      if (!this.pool.tryReserve(tokens * kvBytesPerToken(this.kvShape))) break; // no room: wait for a finish
      this.waiting.shift();
      seq.kv = new SequenceKv(this.kvShape, this.pool, tokens);
      seq.state = 'prefilling';
      seq.admittedAt = performance.now();
      this.running.push(seq);
    }
  }

  private async prefillStep(seq: Sequence): Promise<void> {
    const kv = seq.kv;
    if (!kv) throw new Error('unreachable: prefilling without KV');
    const prompt = seq.request.promptTokens;
    const chunk = prompt.slice(seq.prefilled, seq.prefilled + this.options.prefillChunk);
    const start = kv.nextPosition;
    const inputs = this.inputs.prefill(kv, chunk, start);
    const f0 = performance.now();
    const out = await this.session.run(inputs);
    this.forwardMs += performance.now() - f0;
    const positions = Array.from({ length: chunk.length }, (_, i) => start + i);
    kv.append(out.presentKeys, out.presentValues, 0, chunk.length, positions);
    seq.prefilled += chunk.length;
    if (seq.prefilled < prompt.length) return;
    seq.prefillDoneAt = performance.now();
    seq.state = 'decoding';
    this.accept(seq, out.logits.subarray(0, this.spec.vocabSize));
  }

  private async decodeStep(batch: readonly Sequence[]): Promise<void> {
    const kvs: SequenceKv[] = [];
    const tokens: number[] = [];
    const positions: number[] = [];
    for (const s of batch) {
      if (!s.kv) throw new Error('unreachable: decoding without KV');
      kvs.push(s.kv);
      tokens.push(s.pendingToken);
      positions.push(s.kv.nextPosition);
    }
    const inputs = this.inputs.decode(kvs, tokens, positions);
    const f0 = performance.now();
    const out = await this.session.run(inputs);
    this.forwardMs += performance.now() - f0;
    const V = this.spec.vocabSize;
    batch.forEach((s, b) => {
      s.kv?.append(out.presentKeys, out.presentValues, b, 1, [positions[b] ?? 0]);
      this.accept(s, out.logits.subarray(b * V, (b + 1) * V));
    });
    this.decodeTokens += batch.length;
  }

  /** Samples the next token from `logits`, streams its text, and decides whether the sequence ends. */
  private accept(seq: Sequence, logits: Float32Array): void {
    const r = seq.sampler.sample(logits);
    seq.generated += 1;
    seq.pendingToken = r.tokenId;
    if (seq.stopIds.has(r.tokenId)) {
      seq.finishReason = 'stop';
      seq.stopReason = r.tokenId;
      this.out.push({ id: seq.id, event: { type: 'token', tokenId: r.tokenId, text: '', logprob: r.logprob, topLogprobs: r.topLogprobs } });
      this.finish(seq, this.trailingText(seq));
      return;
    }
    const delta = seq.decodeStream.push(r.tokenId);
    const pushed = seq.stopMatcher.push(delta);
    this.out.push({ id: seq.id, event: { type: 'token', tokenId: r.tokenId, text: pushed.emit, logprob: r.logprob, topLogprobs: r.topLogprobs } });
    if (pushed.stopped) {
      seq.finishReason = 'stop';
      seq.stopReason = pushed.matched;
      this.finish(seq, '');
      return;
    }
    const kvLength = seq.kv?.maxLength ?? 0;
    if (seq.generated >= seq.request.sampling.maxTokens || kvLength + 1 >= this.options.contextLength) {
      seq.finishReason = 'length';
      this.finish(seq, this.trailingText(seq));
    }
  }

  /** Text still held by the detokenizer or the stop matcher when generation ends. */
  private trailingText(seq: Sequence): string {
    const tail = seq.stopMatcher.push(seq.decodeStream.flush());
    return tail.stopped ? tail.emit : tail.emit + seq.stopMatcher.flush();
  }

  private finish(seq: Sequence, trailingText: string): void {
    seq.state = 'finished';
    seq.kv?.release();
    seq.kv = null;
    this.remove(seq);
    const now = performance.now();
    const admitted = seq.admittedAt || now;
    this.out.push({
      id: seq.id,
      event: {
        type: 'done',
        finishReason: seq.finishReason ?? 'stop',
        text: trailingText,
        usage: { promptTokens: seq.promptLength, completionTokens: seq.generated },
        stopReason: seq.stopReason,
        timings: {
          queueMs: admitted - seq.submittedAt,
          prefillMs: seq.prefillDoneAt ? seq.prefillDoneAt - admitted : 0,
          totalMs: now - seq.submittedAt,
        },
      },
    });
  }

  private finishWithError(seq: Sequence, err: unknown): void {
    seq.state = 'finished';
    seq.kv?.release();
    seq.kv = null;
    this.remove(seq);
    this.fail(seq.id, err);
  }

  private remove(seq: Sequence): void {
    this.byId.delete(seq.id);
    for (const list of [this.waiting, this.running]) {
      const i = list.indexOf(seq);
      if (i >= 0) list.splice(i, 1);
    }
  }
}
