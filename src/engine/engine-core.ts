/**
 * The engine loop: one step = schedule -> execute -> update, with aborts and
 * admissions handled between steps. Runs on the inference thread (worker), never
 * on the HTTP thread. Continuous batching: every decoding sequence advances one
 * token per step in a single batched forward pass; a sequence still prefilling
 * advances by one chunk per step, so long prompts never stall running streams.
 */
import { KvPool } from '../kv/kv-pool.js';
import { kvBytesPerToken, roundToBlock, SequenceKv, type KvShape } from '../kv/sequence-kv.js';
import type { ModelSpec } from '../model/spec.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import type { ModelRunner } from '../runtime/model-runner.js';
import type { DecoderStepInputs, DecoderStepOutputs } from '../runtime/decoder-session.js';
import { ropeInverseFrequencies } from '../model/compile/rope.js';
import { EvictionState, type EvictionPhase } from './eviction-state.js';
import { QuestState, questInputs } from './quest-state.js';
import { sinkWindowParams } from '../policies/sparse-attention/sink-window.js';
import { ModelScorer } from '../policies/compression/model-scorer.js';
import { compressPrompt } from './compress-prompt.js';
import { policyReport } from './policy-report.js';
import { collectScores, scoreResult } from './scoring.js';
import { EngineError, type EngineErrorCode } from './errors.js';
import { Sequence } from './sequence.js';
import { StepInputBuilder } from './step-inputs.js';
import type { GenerateRequest, ScoreRequest, ScoreResult, TokenEvent } from './types.js';
import { DEFAULT_SAMPLING } from './types.js';
import { logSoftmaxRow } from './log-softmax.js';
import { validateRequest } from './request-validation.js';
import { AutomatonCache } from './grammar/matcher.js';
import { TokenTrie } from './grammar/token-trie.js';

/** Which compiled graph a forward pass runs on. */
export type GraphVariant = 'plain' | 'stats' | 'quest' | 'reference';

export interface EngineCoreOptions {
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly kvBudgetBytes: number;
  readonly contextLength: number;
  readonly prefillChunk: number;
  /** Graph variants this model has (MoE models: the same, run layer by layer, plus the all-resident reference). */
  readonly variants: readonly Exclude<GraphVariant, 'plain'>[];
  /** Opens the compression scorer when it is not the served model (another local model directory). */
  readonly openScorer?: () => Promise<ModelScorer>;
}

export type CoreOutput =
  | { readonly id: string; readonly event: TokenEvent }
  | { readonly id: string; readonly scored: ScoreResult }
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
  /** The model runner's own counters (MoE expert cache and loads). */
  readonly runner: Readonly<Record<string, number>>;
  /** Forward passes run on each graph variant since start. */
  readonly passes: Readonly<Record<GraphVariant, number>>;
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
  private readonly passes: Record<GraphVariant, number> = { plain: 0, stats: 0, quest: 0, reference: 0 };

  private readonly variants = new Map<GraphVariant, ModelRunner>();
  private scorer: ModelScorer | null = null;
  private readonly invFreq: Float32Array;
  private tokenTrie: TokenTrie | null = null;
  private readonly grammars = new AutomatonCache(() => {
    const bytes = this.tokenizer.tokenBytes?.();
    if (bytes === undefined) throw new EngineError('invalid_request', 'constrained decoding needs the tokenizer\'s token bytes, which this tokenizer does not provide', { param: 'response_format' });
    this.tokenTrie ??= new TokenTrie(bytes, this.spec.vocabSize);
    return this.tokenTrie;
  });

  constructor(
    private readonly session: ModelRunner,
    /** Graph variants (attention statistics, Quest selection), loaded on first need. */
    private readonly loadVariant: (variant: Exclude<GraphVariant, 'plain'>) => Promise<ModelRunner>,
    private readonly spec: ModelSpec,
    private readonly tokenizer: TextTokenizer,
    private readonly options: EngineCoreOptions,
  ) {
    this.pool = new KvPool(options.kvBudgetBytes);
    this.kvShape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim };
    this.invFreq = ropeInverseFrequencies(spec);
    this.inputs = new StepInputBuilder(spec.numLayers, spec.numKvHeads, spec.headDim, { slidingWindow: spec.slidingWindow, layerWindows: spec.layerWindows });
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
      runner: this.session.stats(),
      passes: { ...this.passes },
    };
  }

  /** Outputs produced since the last call. */
  drain(): CoreOutput[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  submit(request: GenerateRequest): void {
    this.enqueue(request, null);
  }

  submitScore(request: ScoreRequest): void {
    const n = request.tokens.length;
    const generateShaped: GenerateRequest = {
      id: request.id,
      promptTokens: request.tokens,
      sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 1 },
      policy: request.policy,
      ...(request.servingPolicy ? { servingPolicy: request.servingPolicy } : {}),
    };
    if (n < 2 || !Number.isInteger(request.from) || request.from < 0 || request.from > n - 2) {
      this.fail(request.id, new EngineError('invalid_request', `scoring needs at least 2 tokens and 0 <= from <= ${n - 2}; got ${n} tokens, from ${request.from}`));
      return;
    }
    this.enqueue(generateShaped, request);
  }

  private enqueue(request: GenerateRequest, scoring: ScoreRequest | null): void {
    try {
      this.validate(request, scoring !== null);
      const grammar = request.grammar === undefined ? null : this.grammars.get(request.grammar);
      const seq = new Sequence(request, this.spec.vocabSize, this.tokenizer.createDecodeStream({ skipSpecialTokens: true, context: request.promptTokens }), this.spec.eosTokenIds, this.options.contextLength, grammar);
      seq.scoring = scoring;
      const policy = request.servingPolicy;
      if (policy && policy.kind === 'kv-eviction') seq.eviction = new EvictionState(policy, this.spec, this.invFreq);
      if (policy && policy.method === 'quest') seq.quest = new QuestState(policy, this.spec);
      if (policy && policy.method === 'sink-window') seq.sinkWindow = sinkWindowParams(policy);
      const variant = seq.quest ? 'quest' : seq.eviction?.needsStats ? 'stats' : null;
      if (variant && !this.options.variants.includes(variant)) {
        throw new EngineError(
          'invalid_request',
          `policy ${request.policy} needs the ${variant === 'quest' ? 'Quest page-selection' : 'attention-statistics'} graph, which this model (${this.spec.architecture}) does not have`,
          { param: 'cap.policy' },
        );
      }
      seq.reservation = this.reservationFor(seq);
      const bytes = seq.reservation * kvBytesPerToken(this.kvShape);
      if (bytes > this.pool.budgetBytes) {
        throw new EngineError(
          'invalid_request',
          `this request needs ${seq.reservation} tokens of KV cache (${bytes} bytes) but the KV budget is ${this.pool.budgetBytes} bytes; lower max_tokens or the prompt`,
          { param: 'max_tokens' },
        );
      }
      this.byId.set(request.id, seq);
      this.waiting.push(seq);
    } catch (err) {
      this.fail(request.id, err);
    }
  }

  /**
   * Entries per layer a sequence can hold at once. With a token-count eviction
   * budget the cache is bounded by the budget (PyramidKV's lower layers get up to
   * about twice it) plus what arrives between evictions; otherwise by what it covers.
   */
  private reservationFor(seq: Sequence): number {
    return roundToBlock(this.entriesNeeded(seq));
  }

  private entriesNeeded(seq: Sequence): number {
    const covered = seq.maxTokensCovered;
    const ev = seq.eviction;
    if (!ev) return covered;
    const budget = ev.policy.params['budget'];
    if (typeof budget !== 'number' || budget <= 1) return covered;
    const every = ev.policy.params['compressEvery'];
    const between = Math.max(this.chunkFor(seq), typeof every === 'number' && every > 0 ? every : covered);
    return Math.min(covered, 2 * budget + ev.observationWindow + between + 1);
  }

  private chunkFor(seq: Sequence): number {
    return seq.scoring?.chunk ?? this.options.prefillChunk;
  }

  abort(id: string): void {
    const seq = this.byId.get(id);
    if (seq) seq.abortRequested = true;
  }

  private validate(request: GenerateRequest, scoring: boolean): void {
    if (this.byId.has(request.id)) throw new EngineError('invalid_request', `request id ${request.id} is already in use`);
    validateRequest(request, { vocabSize: this.spec.vocabSize, contextLength: this.options.contextLength }, scoring);
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

  private async forward(inputs: DecoderStepInputs, withStats: boolean | GraphVariant): Promise<DecoderStepOutputs> {
    const variant: GraphVariant = withStats === true ? 'stats' : withStats === false ? 'plain' : withStats;
    let runner = this.session;
    if (variant !== 'plain') {
      let loaded = this.variants.get(variant);
      if (!loaded) {
        loaded = await this.loadVariant(variant);
        this.variants.set(variant, loaded);
      }
      runner = loaded;
    }
    const f0 = performance.now();
    this.passes[variant] += 1;
    const out = await runner.run(inputs);
    this.forwardMs += performance.now() - f0;
    return out;
  }

  /** Hands one sequence's row of a pass's statistics to its eviction state, then lets it evict. */
  private afterPass(
    seq: Sequence,
    out: DecoderStepOutputs,
    inputs: DecoderStepInputs,
    row: number,
    lengthBefore: readonly number[],
    phase: EvictionPhase,
  ): void {
    const ev = seq.eviction;
    const kv = seq.kv;
    if (!ev || !kv) return;
    if (out.attnSum && out.attnRows) {
      ev.observe(kv, {
        row,
        batch: inputs.batch,
        newTokens: inputs.newTokens,
        window: Math.max(1, inputs.attnWindow ?? 1),
        pastWidth: inputs.layers.map((l) => l.capacity),
        lengthBefore,
        attnSum: out.attnSum,
        attnRows: out.attnRows,
      });
    }
    ev.afterPass(kv, phase, seq.prefilled + Math.max(0, seq.generated - (phase === 'decode' ? 0 : 1)));
  }

  private layerLengths(kv: SequenceKv): number[] {
    return Array.from({ length: this.spec.numLayers }, (_, l) => kv.length(l));
  }

  /** Runs one engine step. Errors in the forward pass fail the sequences involved, never the loop. */
  async step(): Promise<void> {
    const t0 = performance.now();
    this.reapAborted();
    this.admit();
    const decoding = this.running.filter((s) => s.state === 'decoding');
    if (decoding.length > 0) await this.decodeStep(decoding);
    const compressing = this.running.find((s) => s.state === 'compressing');
    if (compressing) {
      try {
        await this.compressStep(compressing);
      } catch (err) {
        this.finishWithError(compressing, err);
      }
    }
    const fresh = this.freshPrefillBatch();
    if (fresh.length >= 2) {
      try {
        await this.prefillFresh(fresh);
      } catch (err) {
        for (const s of fresh) this.finishWithError(s, err);
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
      const tokens = seq.reservation;
      if (!this.pool.tryReserve(tokens * kvBytesPerToken(this.kvShape))) break; // no room: wait for a finish
      this.waiting.shift();
      seq.kv = new SequenceKv(this.kvShape, this.pool, tokens);
      seq.state = seq.request.servingPolicy?.kind === 'context-compression' && !seq.scoring ? 'compressing' : 'prefilling';
      seq.admittedAt = performance.now();
      this.running.push(seq);
    }
  }

  /**
   * Context compression before prefill, with the served model (or the configured
   * scorer model) as the scorer: its forward passes run here on the inference
   * thread, the P cost of C, timed and reported.
   */
  private async compressStep(seq: Sequence): Promise<void> {
    this.scorer ??= this.options.openScorer ? await this.options.openScorer() : new ModelScorer(this.session, this.spec);
    await compressPrompt(seq, this.scorer, this.tokenizer, this.spec, this.options.contextLength);
    this.forwardMs += seq.compressMs;
    seq.state = 'prefilling';
  }

  /**
   * Short prompts of newly admitted plain sequences, packed into one forward pass
   * (padded tokens within the prefill chunk budget): under a burst of requests,
   * time to first token no longer grows by one step per queued prompt.
   */
  private freshPrefillBatch(): Sequence[] {
    const budget = this.options.prefillChunk;
    const picked: Sequence[] = [];
    let longest = 0;
    for (const s of this.running) {
      const plain = !s.eviction && !s.sinkWindow && !s.scoring;
      if (s.state !== 'prefilling' || !plain || s.prefilled !== 0 || s.prompt.length > budget) continue;
      const next = Math.max(longest, s.prompt.length);
      if ((picked.length + 1) * next > budget) break;
      picked.push(s);
      longest = next;
    }
    return picked;
  }

  private async prefillFresh(batch: readonly Sequence[]): Promise<void> {
    const inputs = this.inputs.prefillFresh(batch.map((s) => s.prompt));
    const out = await this.forward(inputs, false);
    const V = this.spec.vocabSize;
    const now = performance.now();
    batch.forEach((seq, b) =>
      this.isolated(seq, () => {
        const kv = seq.kv;
        if (!kv) throw new Error('unreachable: prefilling without KV');
        const n = seq.prompt.length;
        kv.append(out.presentKeys, out.presentValues, b, inputs.newTokens, Array.from({ length: n }, (_, i) => i));
        seq.quest?.update(kv);
        seq.prefilled = n;
        seq.prefillDoneAt = now;
        seq.state = 'decoding';
        this.accept(seq, out.logits.subarray(b * V, (b + 1) * V));
      }),
    );
  }

  /**
   * Runs one sequence's share of a batched pass. What goes wrong there (its
   * sampling, its detokenizer, its policy state) ends that sequence alone; the
   * rest of the batch goes on. Only a failed forward pass fails every sequence in it.
   */
  private isolated(seq: Sequence, work: () => void): void {
    try {
      work();
    } catch (err) {
      this.finishWithError(seq, err);
    }
  }

  private async prefillStep(seq: Sequence): Promise<void> {
    const kv = seq.kv;
    if (!kv) throw new Error('unreachable: prefilling without KV');
    const prompt = seq.prompt;
    let size = this.chunkFor(seq);
    const remaining = prompt.length - seq.prefilled;
    // The observation window (SnapKV, PyramidKV) must fall inside the last chunk.
    const window = seq.eviction?.observationWindow ?? 0;
    if (remaining > size && remaining - size < window) size = Math.max(1, remaining - window);
    const chunk = prompt.slice(seq.prefilled, seq.prefilled + size);
    const last = seq.prefilled + chunk.length >= prompt.length;
    const start = kv.nextPosition;
    const withStats = seq.eviction?.needsStats ?? false;
    const allLogits = seq.scoring !== null;
    const inputs = this.inputs.prefill(kv, chunk, start, {
      allLogits,
      ...(withStats ? { attnWindow: seq.eviction?.rowsWanted(last) ?? 1 } : {}),
      ...(seq.sinkWindow ? { sinkWindow: seq.sinkWindow } : {}),
    });
    const lengthBefore = this.layerLengths(kv);
    const reference = seq.scoring?.reference === 'resident' && this.options.variants.includes('reference');
    const out = await this.forward(inputs, reference ? 'reference' : withStats);
    const positions = Array.from({ length: chunk.length }, (_, i) => start + i);
    kv.append(out.presentKeys, out.presentValues, 0, chunk.length, positions);
    seq.quest?.update(kv);
    if (seq.scoring) collectScores(seq, out.logits, seq.prefilled, chunk.length, this.spec.vocabSize);
    seq.prefilled += chunk.length;
    this.afterPass(seq, out, inputs, 0, lengthBefore, last ? 'prefill-end' : 'prefill-chunk');
    if (!last) return;
    if (seq.scoring) {
      const scored = scoreResult(seq, this.spec.vocabSize, policyReport(seq, this.spec.numLayers));
      seq.state = 'finished';
      seq.kv?.release();
      seq.kv = null;
      this.remove(seq);
      this.out.push({ id: seq.id, scored });
      return;
    }
    seq.prefillDoneAt = performance.now();
    seq.state = 'decoding';
    this.accept(seq, out.logits.subarray(0, this.spec.vocabSize));
  }

  /** One decode step for every decoding sequence, one forward pass per graph variant in use. */
  private async decodeStep(all: readonly Sequence[]): Promise<void> {
    const groups = new Map<GraphVariant, Sequence[]>();
    for (const s of all) {
      const v: GraphVariant = s.quest ? 'quest' : s.eviction?.needsDecodeStats ? 'stats' : 'plain';
      const list = groups.get(v) ?? [];
      list.push(s);
      groups.set(v, list);
    }
    for (const [variant, batch] of groups) {
      try {
        await this.decodeGroup(variant, batch);
      } catch (err) {
        for (const s of batch) this.finishWithError(s, err);
      }
    }
  }

  private async decodeGroup(variant: GraphVariant, batch: readonly Sequence[]): Promise<void> {
    const kvs: SequenceKv[] = [];
    const tokens: number[] = [];
    const positions: number[] = [];
    for (const s of batch) {
      if (!s.kv) throw new Error('unreachable: decoding without KV');
      kvs.push(s.kv);
      tokens.push(s.pendingToken);
      positions.push(s.kv.nextPosition);
    }
    let inputs = this.inputs.decode(kvs, tokens, positions, variant === 'stats' ? 1 : null);
    if (variant === 'quest') {
      const states = batch.map((s) => s.quest).filter((q): q is QuestState => q !== null);
      inputs = { ...inputs, quest: questInputs(states, kvs, this.spec.numLayers, this.spec.numKvHeads, this.spec.headDim) };
    }
    const before = kvs.map((kv) => this.layerLengths(kv));
    const out = await this.forward(inputs, variant);
    const V = this.spec.vocabSize;
    batch.forEach((s, b) =>
      this.isolated(s, () => {
        if (!s.kv) return;
        s.kv.append(out.presentKeys, out.presentValues, b, 1, [positions[b] ?? 0]);
        s.quest?.update(s.kv);
        this.afterPass(s, out, inputs, b, before[b] ?? [], 'decode');
        this.accept(s, out.logits.subarray(b * V, (b + 1) * V));
      }),
    );
    this.decodeTokens += batch.length;
  }

  /** Samples the next token from `logits`, streams its text, and decides whether the sequence ends. */
  private accept(seq: Sequence, logits: Float32Array): void {
    const capture = seq.request.captureLogprobs;
    if (capture === true || (typeof capture === 'number' && seq.generated < capture)) seq.captured.push(logSoftmaxRow(logits));
    const forced = seq.request.forcedTokens?.[seq.generated];
    const r = forced === undefined ? seq.sampler.sample(logits) : { tokenId: forced, logprob: null, topLogprobs: null };
    seq.generated += 1;
    seq.pendingToken = r.tokenId;
    // Logprob strings are decoded in the context the token follows, before it joins that context.
    const strings = r.logprob === null ? [] : seq.decodeStream.peek([r.tokenId, ...(r.topLogprobs ?? []).map((t) => t.tokenId)]);
    const tokenText = strings[0] ?? '';
    const topLogprobs = r.topLogprobs === null ? null : r.topLogprobs.map((t, i) => ({ ...t, text: strings[i + 1] ?? '' }));
    const token = { type: 'token', tokenId: r.tokenId, tokenText, logprob: r.logprob, topLogprobs } as const;
    if (seq.stopIds.has(r.tokenId)) {
      seq.finishReason = 'stop';
      seq.stopReason = r.tokenId;
      this.out.push({ id: seq.id, event: { ...token, text: '' } });
      this.finish(seq, this.trailingText(seq));
      return;
    }
    const delta = seq.decodeStream.push(r.tokenId);
    const pushed = seq.stopMatcher.push(delta);
    this.out.push({ id: seq.id, event: { ...token, text: pushed.emit } });
    if (pushed.stopped) {
      seq.finishReason = 'stop';
      seq.stopReason = pushed.matched;
      this.finish(seq, '');
      return;
    }
    if (seq.sampler.constraint?.finished === true) {
      // The document is complete and nothing may follow it: done, as if EOS had come.
      seq.finishReason = 'stop';
      this.finish(seq, this.trailingText(seq));
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
    const report = policyReport(seq, this.spec.numLayers);
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
        usage: { promptTokens: seq.request.promptTokens.length, completionTokens: seq.generated },
        stopReason: seq.stopReason,
        timings: {
          queueMs: admitted - seq.submittedAt,
          prefillMs: seq.prefillDoneAt ? seq.prefillDoneAt - admitted : 0,
          totalMs: now - seq.submittedAt,
        },
        policy: report,
        ...(seq.request.captureLogprobs ? { capturedLogprobs: concatRows(seq.captured, this.spec.vocabSize) } : {}),
        ...(seq.request.returnDropped && seq.compression ? { dropped: seq.compression.dropped } : {}),
        ...(seq.sampler.constraint ? { constraint: seq.sampler.constraint.report() } : {}),
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

function concatRows(rows: readonly Float32Array[], width: number): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => out.set(r, i * width));
  return out;
}
