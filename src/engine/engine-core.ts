/**
 * The engine loop: one step = schedule -> execute -> update, with aborts and
 * admissions decided between passes. Runs on the inference thread (worker),
 * never on the HTTP thread. The Scheduler decides the step from plain data,
 * the StepExecutor runs its passes on the model runners, StepUpdate folds
 * logits back and ends sequences; each sequence's policy runtime (its method's
 * contract) says what graph, KV and chunks it needs. Continuous batching:
 * every decoding sequence advances one token per step; a sequence still
 * prefilling advances by one chunk per step, so long prompts never stall running streams
 * (under `maxTokensPerStep`, a chunk bounded by what the step's decode tokens leave).
 * With a prefix cache, an admitted sequence starts from the cached KV of its
 * prompt's longest cached prefix; cached blocks count in the KV budget and
 * make way for admissions. With a step latency target, the step times its own
 * passes (PassCostModel) and the scheduler sizes chunks by time. Storing a
 * prefilled prompt's or a finished sequence's blocks in the prefix cache is
 * deferred to `maintain()`, which the worker calls once the step's outputs are
 * sent: the copy no longer delays the first or the final token.
 */
import { stepTraceFromEnv } from './step-trace.js';
import { KvPool } from '../kv/kv-pool.js';
import type { PrefixCacheOptions } from '../kv/prefix-cache.js';
import { kvBytesPerToken, roundToBlock, SequenceKv, type KvShape } from '../kv/sequence-kv.js';
import type { ModelSpec } from '../model/spec.js';
import type { KvDtype } from '../model/step-io.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import { PolicyError } from '../policies/errors.js';
import { instantiatePolicy } from '../policies/methods.js';
import type { GraphVariant, PolicyRuntime } from '../policies/runtime.js';
import type { ModelRunner } from '../runtime/model-runner.js';
import { EngineError } from './errors.js';
import { ModelScorer } from './model-scorer.js';
import { PassCostModel } from './pass-cost.js';
import { PrefixReuse } from './prefix-reuse.js';
import { validateRequest } from './request-validation.js';
import { AutomatonCache } from './grammar/matcher.js';
import type { GrammarAutomaton } from './grammar/automaton.js';
import type { Grammar } from './grammar/grammar.js';
import { TokenTrie } from './grammar/token-trie.js';
import { Scheduler, type SchedulerSeq, type StepPlan } from './scheduler.js';
import { WorkloadMix } from './workload-mix.js';
import { Sequence } from './sequence.js';
import { StepExecutor } from './step-executor.js';
import { StepInputBuilder } from './step-inputs.js';
import { StepUpdate, type CoreOutput } from './step-update.js';
import type { GenerateRequest, ScoreRequest } from './types.js';
import { DEFAULT_SAMPLING } from './types.js';
import { VariantRunners, type LoadVariant } from './variant-runners.js';

export type { GraphVariant } from '../policies/runtime.js';
export type { CoreOutput } from './step-update.js';

export interface EngineCoreOptions {
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly kvBudgetBytes: number;
  /** The KV cache's storage dtype (the served graph's past inputs); default fp32. */
  readonly kvDtype?: KvDtype;
  readonly contextLength: number;
  readonly prefillChunk: number;
  /** Tokens one engine step may run while sequences decode (decode tokens + bounded prefill); 0 or absent: a whole prefillChunk per step. */
  readonly maxTokensPerStep?: number;
  /** Step latency target (ms) that sizes prefill chunks by measured pass costs while sequences decode; 0 or absent: the token budget alone. */
  readonly stepTargetMs?: number;
  /** Shares the KV of repeated prompt prefixes across requests; absent or null: no prefix cache. */
  readonly prefixCache?: PrefixCacheOptions | null;
  /** Graph variants this model has (MoE models: the same, run layer by layer, plus the all-resident reference). */
  readonly variants: readonly Exclude<GraphVariant, 'plain'>[];
  /** Opens the compression scorer when it is not the served model (another local model directory). */
  readonly openScorer?: () => Promise<ModelScorer>;
}

export interface CoreStats {
  readonly running: number;
  readonly waiting: number;
  /** KV bytes of live sequences (a finished one whose blocks wait for maintain() is not counted). */
  readonly kvBytesUsed: number;
  readonly kvBytesReserved: number;
  readonly kvBytesCapacity: number;
  readonly steps: number;
  /** Time inside onnxruntime, and whole steps, since start (for overhead accounting). */
  readonly forwardMs: number;
  readonly stepMs: number;
  readonly decodeTokens: number;
  /** KV entries (counted once per layer) copied into decode groups' gathered pasts since start: batched decode's copying. */
  readonly gatheredKvEntries: number;
  /** Bytes the decode groups' gathered pasts hold now: a copy of batched sequences' KV, outside the KV budget. */
  readonly gatheredKvBytes: number;
  /** The model runner's own counters (MoE expert cache and loads). */
  readonly runner: Readonly<Record<string, number>>;
  /** Forward passes run on each graph variant since start. */
  readonly passes: Readonly<Record<GraphVariant, number>>;
  /** Bytes the prefix cache holds (inside the KV budget, not in kvBytesUsed); 0 without one. */
  readonly prefixCacheBytes: number;
}

const VARIANT_LABEL: Readonly<Record<GraphVariant, string>> = {
  plain: 'plain',
  stats: 'attention-statistics',
  quest: 'Quest page-selection',
  reference: 'full-precision resident reference',
};

export class EngineCore {
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly byId = new Map<string, Sequence>();
  private readonly pool: KvPool;
  private readonly kvShape: KvShape;
  private readonly runners: VariantRunners;
  private readonly scheduler: Scheduler;
  private readonly update: StepUpdate;
  private readonly executor: StepExecutor;
  private readonly prefix: PrefixReuse | null;
  private scorer: ModelScorer | null = null;
  private tokenTrie: TokenTrie | null = null;
  private readonly grammars = new AutomatonCache(() => {
    const bytes = this.tokenizer.tokenBytes?.();
    if (bytes === undefined)
      throw new EngineError('invalid_request', "constrained decoding needs the tokenizer's token bytes, which this tokenizer does not provide", {
        field: 'responseFormat',
      });
    this.tokenTrie ??= new TokenTrie(bytes, this.spec.vocabSize);
    return this.tokenTrie;
  });
  private steps = 0;
  private stepMs = 0;
  private readonly costs = new PassCostModel();
  /** CAPSERVE_STEP_TRACE's per-step record (step-trace.ts); null: off. */
  private readonly trace = stepTraceFromEnv();
  /** The last step's decode and prefill pass time, ms (for the trace). */
  private lastPassMs = { decode: 0, prefill: 0 };
  private readonly mix = new WorkloadMix();
  /** Sequences whose prompt was prefilled this step: their blocks go into the prefix cache at the next maintain(). */
  private readonly prefilled: Sequence[] = [];
  /** Finished sequences whose blocks go into the prefix cache at the next maintain(). */
  private readonly retiring: { seq: Sequence; kv: SequenceKv }[] = [];

  constructor(
    session: ModelRunner,
    /** Graph variants (attention statistics, Quest selection), loaded on first need. */
    loadVariant: LoadVariant,
    private readonly spec: ModelSpec,
    private readonly tokenizer: TextTokenizer,
    private readonly options: EngineCoreOptions,
  ) {
    this.pool = new KvPool(options.kvBudgetBytes);
    this.kvShape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, dtype: options.kvDtype ?? 'fp32' };
    this.runners = new VariantRunners(session, loadVariant, options.variants);
    this.scheduler = new Scheduler({
      maxConcurrent: options.maxConcurrent,
      prefillChunk: options.prefillChunk,
      maxTokensPerStep: options.maxTokensPerStep ?? 0,
      stepTargetMs: options.stepTargetMs ?? 0,
    });
    this.prefix = options.prefixCache ? new PrefixReuse(this.kvShape, this.pool, options.prefixCache) : null;
    this.update = new StepUpdate(
      spec,
      options.contextLength,
      (seq) => this.remove(seq),
      (seq) => {
        if (this.prefix === null || seq.kv === null) return false;
        this.retiring.push({ seq, kv: seq.kv });
        return true;
      },
    );
    this.executor = new StepExecutor({
      runners: this.runners,
      inputs: new StepInputBuilder(
        spec.numLayers,
        spec.numKvHeads,
        spec.headDim,
        { slidingWindow: spec.slidingWindow, layerWindows: spec.layerWindows },
        this.kvShape.dtype,
        options.maxConcurrent,
      ),
      spec,
      tokenizer,
      contextLength: options.contextLength,
      update: this.update,
      scorer: async () => {
        this.scorer ??= options.openScorer ? await options.openScorer() : new ModelScorer(session, spec);
        return this.scorer;
      },
    });
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  stats(): CoreStats {
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      // Finished sequences' KV waiting for maintain() (their blocks go to the prefix cache, the rest is freed) is no live sequence's.
      kvBytesUsed: this.pool.allocatedBytes - this.retiring.reduce((n, r) => n + r.kv.allocatedBytes, 0),
      kvBytesReserved: this.pool.reservedBytes,
      kvBytesCapacity: this.pool.budgetBytes,
      steps: this.steps,
      forwardMs: this.runners.forwardMs + this.executor.hookMs,
      stepMs: this.stepMs,
      decodeTokens: this.executor.decodeTokens,
      gatheredKvEntries: this.executor.gatheredKvEntries,
      gatheredKvBytes: this.executor.gatheredKvBytes,
      runner: this.runners.plain.stats(),
      passes: { ...this.runners.passes },
      prefixCacheBytes: this.prefix?.bytes ?? 0,
    };
  }

  /** Outputs produced since the last call. */
  drain(): CoreOutput[] {
    return this.update.drain();
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
      this.update.fail(
        request.id,
        new EngineError('invalid_request', `scoring needs at least 2 tokens and 0 <= from <= ${n - 2}; got ${n} tokens, from ${request.from}`),
      );
      return;
    }
    this.enqueue(generateShaped, request);
  }

  private enqueue(request: GenerateRequest, scoring: ScoreRequest | null): void {
    try {
      const runtime = this.instantiate(request);
      this.validate(request, runtime, scoring !== null);
      const grammar = request.grammar === undefined ? null : this.automaton(request.grammar);
      const seq = new Sequence(
        request,
        runtime,
        this.spec.vocabSize,
        this.tokenizer.createDecodeStream({ skipSpecialTokens: true, context: request.promptTokens }),
        this.spec.eosTokenIds,
        this.options.contextLength,
        grammar,
      );
      seq.scoring = scoring;
      for (const phase of ['decode', 'prefill'] as const) {
        const variant = runtime.variant(phase);
        if (!this.runners.has(variant)) {
          throw new EngineError(
            'invalid_request',
            `policy ${request.policy} needs the ${VARIANT_LABEL[variant]} graph, which this model (${this.spec.architecture}) does not have`,
            {
              field: 'policy',
            },
          );
        }
      }
      seq.reservation = roundToBlock(runtime.reserve(seq.maxTokensCovered, this.chunkFor(seq)));
      const bytes = seq.reservation * kvBytesPerToken(this.kvShape);
      if (bytes > this.pool.budgetBytes) {
        throw new EngineError(
          'invalid_request',
          `this request needs ${seq.reservation} tokens of KV cache (${bytes} bytes) but the KV budget is ${this.pool.budgetBytes} bytes; lower max_tokens or the prompt`,
          { field: 'maxTokens' },
        );
      }
      this.byId.set(request.id, seq);
      this.waiting.push(seq);
    } catch (err) {
      this.update.fail(request.id, err);
    }
  }

  /** The request's compiled grammar; one too costly to build (the automaton's caps) is the request's invalid constraint. */
  private automaton(grammar: Grammar): GrammarAutomaton {
    try {
      return this.grammars.get(grammar);
    } catch (err) {
      if (err instanceof RangeError)
        throw new EngineError('invalid_request', `the output constraint is too complex: ${err.message}`, { field: 'responseFormat' });
      throw err;
    }
  }

  /** The request's policy runtime; a method refusing this model (PolicyError) is the request's invalid policy. */
  private instantiate(request: GenerateRequest): PolicyRuntime {
    try {
      return instantiatePolicy(request.servingPolicy, this.spec);
    } catch (err) {
      if (err instanceof PolicyError) throw new EngineError('invalid_request', `policy ${request.policy}: ${err.message}`, { field: 'policy' });
      throw err;
    }
  }

  private chunkFor(seq: Sequence): number {
    return seq.scoring?.chunk ?? this.options.prefillChunk;
  }

  abort(id: string): void {
    const seq = this.byId.get(id);
    if (seq) seq.abortRequested = true;
  }

  private validate(request: GenerateRequest, runtime: PolicyRuntime, scoring: boolean): void {
    if (this.byId.has(request.id)) throw new EngineError('invalid_request', `request id ${request.id} is already in use`);
    validateRequest(
      request,
      { vocabSize: this.spec.vocabSize, contextLength: this.options.contextLength },
      { scoring, promptMayExceedWindow: runtime.boundsCache || runtime.shrinksPrompt },
    );
    if (this.waiting.length >= this.options.maxQueue && this.running.length >= this.options.maxConcurrent) {
      throw new EngineError('queue_full', `the server is at capacity (${this.options.maxConcurrent} running, ${this.waiting.length} waiting)`, {
        retryAfterSeconds: 1,
      });
    }
  }

  /** What the scheduler reads of a sequence: plain data. */
  private view(seq: Sequence): SchedulerSeq {
    const rt = seq.runtime;
    const reference = seq.scoring?.reference === 'resident' && this.runners.has('reference');
    return {
      id: seq.id,
      state: seq.state,
      abortRequested: seq.abortRequested,
      reserveBytes: seq.reservation * kvBytesPerToken(this.kvShape),
      promptLength: seq.prompt.length,
      prefilled: seq.prefilled,
      nextChunk: rt.limitChunk(seq.prompt.length - seq.prefilled, this.chunkFor(seq)),
      limitChunk: (size) => rt.limitChunk(seq.prompt.length - seq.prefilled, size),
      cachedPrefix: seq.state === 'waiting' && this.prefix !== null ? this.prefix.cachedPrefix(seq) : 0,
      batchablePrefill: rt.batchablePrefill && seq.scoring === null,
      prefillVariant: reference ? 'reference' : rt.variant('prefill'),
      decodeVariant: rt.variant('decode'),
      decodeKey: rt.batchKey,
      hasBeforePrefill: rt.beforePrefill !== null && seq.scoring === null,
    };
  }

  /**
   * Work that no token waits for, run between steps once outputs are sent:
   * newly prefilled prompts' and finished sequences' blocks go into the
   * prefix cache. step() runs it first
   * too, so nothing is lost when the caller never calls it.
   */
  maintain(): void {
    const prefix = this.prefix;
    if (prefix === null) return;
    for (const s of this.prefilled.splice(0)) if (s.state === 'decoding' && s.kv !== null) this.update.isolated(s, () => prefix.prefillDone(s));
    for (const r of this.retiring.splice(0)) prefix.retire(r.seq, r.kv);
  }

  /** Runs one engine step. Errors in a forward pass fail the sequences involved, never the loop. */
  async step(): Promise<void> {
    this.maintain();
    const t0 = performance.now();
    const plan = this.scheduler.schedule({
      waiting: this.waiting.map((s) => this.view(s)),
      running: this.running.map((s) => this.view(s)),
      // Cached prefix blocks are reclaimable: they make way for any admission.
      kvFreeBytes: this.pool.budgetBytes - this.pool.reservedBytes + (this.prefix?.bytes ?? 0),
      costs: this.costs.costs(),
      promptRatio: this.mix.ratio(),
    });
    this.applyQueueChanges(plan);
    await this.execute(plan);
    this.steps += 1;
    const t1 = performance.now();
    this.stepMs += t1 - t0;
    this.trace?.write(t0, t1, {
      decodeMs: this.lastPassMs.decode,
      prefillMs: this.lastPassMs.prefill,
      waiting: this.waiting.length,
      decodeRows: plan.decode.reduce((n, g) => n + g.ids.length, 0),
      decodeGroups: plan.decode.length,
      freshPrompts: plan.freshPrefill.length,
      chunkTokens: plan.prefill?.size ?? 0,
    });
  }

  /**
   * Reaps aborted sequences and moves admitted ones to running with their KV
   * reserved. Every admitted sequence takes its cached prefix before anything
   * changes the cache (an aborted sequence storing its blocks, a reservation
   * evicting some), so each finds what the scheduler saw.
   */
  private applyQueueChanges(plan: StepPlan): void {
    const admitted: Sequence[] = [];
    for (const a of plan.admitted) {
      const seq = this.byId.get(a.id);
      if (!seq) continue;
      this.waiting.splice(this.waiting.indexOf(seq), 1);
      seq.kv = new SequenceKv(this.kvShape, this.pool, seq.reservation);
      this.prefix?.attach(seq, seq.kv);
      seq.state = a.state;
      seq.admittedAt = performance.now();
      this.running.push(seq);
      admitted.push(seq);
    }
    for (const id of plan.aborted) {
      const seq = this.byId.get(id);
      if (seq) this.update.abort(seq);
    }
    for (const seq of admitted) {
      const bytes = seq.reservation * kvBytesPerToken(this.kvShape);
      if (!this.pool.tryReserve(bytes) && !(this.prefix?.reclaim(bytes) === true && this.pool.tryReserve(bytes))) {
        throw new Error(`unreachable: the scheduler admitted ${seq.id} without room`);
      }
    }
  }

  private async execute(plan: StepPlan): Promise<void> {
    const live = (ids: readonly string[]): Sequence[] => ids.map((id) => this.byId.get(id)).filter((s): s is Sequence => s !== undefined);
    const t0 = performance.now();
    let decoded = false;
    for (const group of plan.decode) {
      const batch = live(group.ids);
      if (batch.length === 0) continue;
      decoded = true;
      await this.guard(batch, () => this.executor.decodeGroup(group.variant, group.key, batch));
    }
    const decodeEnd = performance.now();
    if (decoded) this.costs.observeDecode(decodeEnd - t0);
    this.executor.keepDecodeGroups(plan.decode);
    const hooked = plan.beforePrefill === null ? [] : live([plan.beforePrefill]);
    for (const seq of hooked) await this.guard([seq], () => this.executor.beforePrefill(seq));
    const fresh = live(plan.freshPrefill);
    if (fresh.length > 0) {
      const t1 = performance.now();
      await this.guard(fresh, () => this.executor.prefillFresh(fresh));
      this.costs.observePrefill(fresh.length * Math.max(...fresh.map((s) => s.prompt.length)), performance.now() - t1);
    }
    const chunk = plan.prefill;
    const seq = chunk === null ? undefined : this.byId.get(chunk.id);
    if (chunk !== null && seq) {
      const t2 = performance.now();
      await this.guard([seq], () => this.executor.prefillChunk(seq, chunk.size, chunk.last, chunk.variant));
      // Only the plain graph's passes: other variants (statistics, Quest, the reference) cost more and are not what most chunks run on.
      if (chunk.variant === 'plain') this.costs.observePrefill(chunk.size, performance.now() - t2);
    }
    this.lastPassMs = { decode: decodeEnd - t0, prefill: performance.now() - decodeEnd };
    // Their prompt blocks are stored at maintain(), once their first tokens are sent.
    if (this.prefix !== null) for (const s of [...fresh, ...(chunk?.last === true && seq ? [seq] : [])]) if (s.state === 'decoding') this.prefilled.push(s);
  }

  /** A failed pass (or hook) ends the sequences in it, never the loop. */
  private async guard(batch: readonly Sequence[], work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      for (const s of batch) if (s.state !== 'finished') this.update.finishWithError(s, err);
    }
  }

  private remove(seq: Sequence): void {
    this.byId.delete(seq.id);
    if (seq.scoring === null) this.mix.observe(seq.prompt.length - (seq.prefixCache?.cachedTokens ?? 0), seq.generated);
    for (const list of [this.waiting, this.running]) {
      const i = list.indexOf(seq);
      if (i >= 0) list.splice(i, 1);
    }
  }
}
