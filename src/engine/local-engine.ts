/**
 * The EngineClient the server talks to: a thin bridge to the inference worker.
 * Tokenization and chat templates are answered here, before a request is
 * admitted (the API layer needs token counts): small inputs inline, large ones
 * on the tokenizer pool's threads (tokenizer-pool.ts), so the HTTP thread never
 * blocks on them; everything that touches tensors runs in the inference worker.
 */
import { availableParallelism, totalmem } from 'node:os';
import { basename, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { PrefixCacheOptions } from '../kv/prefix-cache.js';
import type { QuantBlockSize } from '../model/compile/compile-model.js';
import type { WeightDtype } from '../model/compile/decoder-graph.js';
import type { KvDtype } from '../model/step-io.js';
import type { ChatMessage, ChatRenderOptions } from '../model/tokenizer-types.js';
import type { RenderedChat } from './text-processor.js';
import { TokenizerPool } from './tokenizer-pool.js';
import type { CoreOutput, CoreStats } from './engine-core.js';
import { EngineError } from './errors.js';
import type { EngineClient, EngineHealth, GenerateRequest, ModelCard, ScoreRequest, ScoreResult, TokenEvent } from './types.js';
import type { FromWorker, ReadyInfo, ToWorker, WorkerInit } from './worker-protocol.js';

/** Largest prefill pass when nothing decodes (config engine.prefillChunk's default). */
export const DEFAULT_PREFILL_CHUNK = 512;

export interface LocalEngineOptions {
  readonly modelDir: string;
  readonly servedModelName?: string;
  readonly cacheDir?: string;
  readonly maxConcurrent?: number;
  readonly maxQueue?: number;
  readonly kvBudgetBytes?: number;
  /** KV cache storage dtype (dense models); default fp32. */
  readonly kvDtype?: KvDtype;
  readonly weightDtype?: WeightDtype;
  /** MatMulNBits block size of int8/int4 dense weights; default by dtype (defaultQuantBlockSize). */
  readonly quantBlockSize?: QuantBlockSize;
  readonly threads?: number;
  /** onnxruntime's intra-op threads spin-wait between kernels; default true (see config engine.threadSpinning). */
  readonly threadSpinning?: boolean;
  readonly contextLength?: number;
  readonly prefillChunk?: number;
  /** Tokens per engine step while requests decode (chunked-prefill budget); 0: off. Default 64. */
  readonly maxTokensPerStep?: number;
  /** Step latency target (ms) sizing prefill chunks by measured pass costs while requests decode; 0: the token budget alone (the default). */
  readonly stepTargetMs?: number;
  /** The prefix cache; null: none. Default: 16-token blocks, up to half the KV budget. */
  readonly prefixCache?: PrefixCacheOptions | null;
  readonly chatTemplateFallback?: string;
  /** The expert-offload policy's params for MoE models (budgetBytes, bits, ...). */
  readonly expertOffload?: Readonly<Record<string, unknown>>;
  /** The weight-elastic (STI) policy's params for dense models; absent: the dense graph. */
  readonly weightElastic?: Readonly<Record<string, unknown>>;
  /** A local model directory scoring prompts for context compression; default: the served model. */
  readonly scorerModelDir?: string;
  readonly onProgress?: (message: string) => void;
  /** The inference worker crashed and is being restarted, or could not be. */
  readonly onWarning?: (message: string) => void;
  /** First restart delay after a crash (default 1000 ms); doubles per crash in a row, up to 30 s. */
  readonly restartDelayMs?: number;
  /** Tests only: allows injectCrash(). */
  readonly faultInjection?: boolean;
  /** Threads tokenizing large inputs off the HTTP thread (default 1). */
  readonly tokenizerThreads?: number;
}

interface Stream {
  readonly events: TokenEvent[];
  error: EngineError | null;
  done: boolean;
  notify: (() => void) | null;
}

/** Why the inference worker stopped: `message` is one line naming the file at fault; the worker's stack is kept for debug logs. */
export class WorkerFailure extends Error {
  override readonly name = 'WorkerFailure';
  readonly workerStack: string | null;

  constructor(message: string, workerStack: string | null) {
    super(message);
    this.workerStack = workerStack;
  }
}

const DEFAULT_KV_BUDGET = Math.min(4 * 1024 ** 3, Math.floor(totalmem() / 4));
/** Chosen by the serving bench (test/bench/serving-bench.ts): see README, Benchmarks. */
const DEFAULT_MAX_TOKENS_PER_STEP = 64;
/** Off until the serving bench shows the target's trade on an idle machine (see README). */
const DEFAULT_STEP_TARGET_MS = 0;

/** Restart backoff after a crash: doubles per crash in a row, capped; a worker up this long resets it. */
const MAX_RESTART_DELAY_MS = 30_000;
const STABLE_AFTER_MS = 60_000;

export class LocalEngine implements EngineClient {
  /** Settles once, with the first model load; restarts after a crash do not touch it. */
  readonly ready: Promise<void>;
  /** Resolves if a worker restarted after a crash cannot reload the model (the engine then stays failed); never otherwise. */
  readonly reloadFailed: Promise<WorkerFailure>;
  private markReloadFailed: (e: WorkerFailure) => void = () => undefined;
  private worker: Worker;
  private readonly init: WorkerInit;
  private readonly options: LocalEngineOptions;
  private readonly text: TokenizerPool;
  private readonly streams = new Map<string, Stream>();
  private readonly scores = new Map<string, { resolve: (r: ScoreResult) => void; reject: (e: EngineError) => void }>();
  private info: ReadyInfo | null = null;
  private stats: CoreStats | null = null;
  private fatal: EngineError | null = null;
  /** Set from a crash until the new worker has reloaded the model. */
  private restarting = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private crashesInARow = 0;
  private readySince = 0;
  private restarts = 0;
  private readonly modelId: string;
  private readonly createdAt = Math.floor(Date.now() / 1000);
  private closed = false;
  private workerExited: Promise<void> = Promise.resolve();
  private markReady: () => void = () => undefined;
  private markFailed: (e: Error) => void = () => undefined;

  constructor(options: LocalEngineOptions) {
    this.options = options;
    const modelDir = resolve(options.modelDir);
    this.modelId = options.servedModelName ?? basename(modelDir);
    this.text = new TokenizerPool({
      modelDir,
      modelId: this.modelId,
      ...(options.chatTemplateFallback !== undefined ? { chatTemplateFallback: options.chatTemplateFallback } : {}),
      ...(options.tokenizerThreads !== undefined ? { size: options.tokenizerThreads } : {}),
    });
    this.init = {
      modelDir,
      cacheDir: resolve(options.cacheDir ?? '.cache/compiled'),
      weightDtype: options.weightDtype ?? 'fp32',
      quantBlockSize: options.quantBlockSize ?? null,
      threads: options.threads ?? availableParallelism(),
      threadSpinning: options.threadSpinning ?? true,
      maxConcurrent: options.maxConcurrent ?? 16,
      maxQueue: options.maxQueue ?? 256,
      kvBudgetBytes: options.kvBudgetBytes ?? DEFAULT_KV_BUDGET,
      kvDtype: options.kvDtype ?? 'fp32',
      contextLength: options.contextLength ?? null,
      prefillChunk: options.prefillChunk ?? DEFAULT_PREFILL_CHUNK,
      maxTokensPerStep: options.maxTokensPerStep ?? DEFAULT_MAX_TOKENS_PER_STEP,
      stepTargetMs: options.stepTargetMs ?? DEFAULT_STEP_TARGET_MS,
      prefixCache:
        options.prefixCache === undefined ? { blockTokens: 16, maxBytes: Math.floor((options.kvBudgetBytes ?? DEFAULT_KV_BUDGET) / 2) } : options.prefixCache,
      ...(options.expertOffload ? { expertOffload: options.expertOffload } : {}),
      ...(options.weightElastic ? { weightElastic: options.weightElastic } : {}),
      ...(options.scorerModelDir ? { scorerModelDir: resolve(options.scorerModelDir) } : {}),
      ...(options.faultInjection === true ? { faultInjection: true } : {}),
    };
    this.ready = new Promise<void>((res, rej) => {
      this.markReady = res;
      this.markFailed = rej;
    });
    // A failed start is reported through health() and generate(); callers that await `ready` see it too.
    this.ready.catch(() => undefined);
    this.reloadFailed = new Promise<WorkerFailure>((res) => {
      this.markReloadFailed = res;
    });
    this.worker = this.startWorker();
  }

  /**
   * Starts an inference worker. A worker that dies before its model is loaded
   * failed to load (deterministic: no restart); one that dies after it served
   * crashed: its requests end with 503 worker_restarting and a new worker
   * reloads the model.
   */
  private startWorker(): Worker {
    const worker = new Worker(new URL('./worker-main.js', import.meta.url), { workerData: this.init });
    let loaded = false;
    let dead = false;
    // `how`: what happened, for logs ("crashed: ..."); `detail`: the one-line reason a failed load reports.
    const died = (how: string, detail: string, stack: string | null): void => {
      if (dead || this.worker !== worker) return;
      dead = true;
      if (this.closed) {
        // Closing: generate() already answers shutting_down; only what is still pending needs an end.
        this.failInflight(new EngineError('shutting_down', 'the server is shutting down', { retryAfterSeconds: 5 }));
        return;
      }
      if (loaded) {
        this.crashed(worker, how);
        return;
      }
      this.restarting = false;
      this.failAll(new EngineError('engine_failed', `the inference worker ${how}`));
      const failure = new WorkerFailure(detail, stack);
      this.markFailed(failure);
      if (this.restarts > 0) {
        this.options.onWarning?.(`the restarted inference worker could not reload the model; not retrying: ${detail}`);
        this.markReloadFailed(failure);
      }
      void worker.terminate();
    };
    worker.on('message', (m: FromWorker) => {
      if (this.worker !== worker) return;
      switch (m.type) {
        case 'progress':
          this.options.onProgress?.(m.message);
          break;
        case 'ready':
          loaded = true;
          this.info = m.info;
          this.stats = m.stats;
          this.readySince = Date.now();
          if (this.restarting) {
            this.restarting = false;
            this.options.onProgress?.(`inference worker restarted: model reloaded (restart ${this.restarts})`);
          }
          this.markReady();
          break;
        case 'outputs':
          this.stats = m.stats;
          this.deliver(m.outputs);
          break;
        case 'fatal':
          died(`failed: ${m.message}`, m.message, m.stack);
          break;
      }
    });
    worker.on('error', (err) => died(`crashed: ${err.message}`, err.message, err.stack ?? null));
    this.workerExited = new Promise<void>((res) => worker.once('exit', () => res()));
    worker.once('exit', (code) => died(`exited (code ${code})`, 'the inference worker exited before the model was ready', null));
    return worker;
  }

  /** The serving worker died: end its requests with a retryable 503 and start a new one. */
  private crashed(worker: Worker, message: string): void {
    this.info = null;
    this.stats = null;
    this.restarting = true;
    if (Date.now() - this.readySince > STABLE_AFTER_MS) this.crashesInARow = 0;
    this.crashesInARow += 1;
    const base = this.options.restartDelayMs ?? 1_000;
    const delay = Math.min(MAX_RESTART_DELAY_MS, base * 2 ** (this.crashesInARow - 1));
    this.options.onWarning?.(`the inference worker ${message}; ending its requests with 503 and restarting it in ${delay} ms`);
    this.failInflight(
      new EngineError('worker_restarting', 'The inference worker stopped while serving this request and is restarting; retry shortly.', {
        retryAfterSeconds: 5,
      }),
    );
    void worker.terminate();
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.closed) return;
      this.restarts += 1;
      this.worker = this.startWorker();
    }, delay);
    this.restartTimer.unref();
  }

  /** Test hook (LocalEngineOptions.faultInjection): the worker throws an uncaught error on its next turn. */
  injectCrash(): void {
    if (this.init.faultInjection !== true) throw new Error('injectCrash needs LocalEngineOptions.faultInjection');
    this.post({ type: 'crash' });
  }

  get readyInfo(): ReadyInfo | null {
    return this.info;
  }

  get coreStats(): CoreStats | null {
    return this.stats;
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private failAll(err: EngineError): void {
    this.fatal = err;
    this.failInflight(err);
  }

  /** Ends every pending request with `err`; the engine itself may live on. */
  private failInflight(err: EngineError): void {
    for (const p of this.scores.values()) p.reject(err);
    this.scores.clear();
    for (const s of this.streams.values()) {
      s.error = err;
      s.notify?.();
    }
  }

  private deliver(outputs: readonly CoreOutput[]): void {
    for (const o of outputs) {
      const pending = this.scores.get(o.id);
      if (pending) {
        this.scores.delete(o.id);
        if ('scored' in o) pending.resolve(o.scored);
        else if ('error' in o) pending.reject(toEngineError(o.error));
        continue;
      }
      const s = this.streams.get(o.id);
      if (!s) continue;
      if ('error' in o) {
        s.error = toEngineError(o.error);
      } else if ('event' in o) {
        s.events.push(o.event);
        if (o.event.type === 'done') s.done = true;
      }
      s.notify?.();
    }
  }

  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<TokenEvent> {
    if (this.fatal) throw this.fatal;
    if (this.closed) throw new EngineError('shutting_down', 'the server is shutting down', { retryAfterSeconds: 5 });
    if (!this.info) throw this.notReadyError();
    if (this.streams.has(request.id)) throw new EngineError('invalid_request', `request id ${request.id} is already in use`);
    const stream: Stream = { events: [], error: null, done: false, notify: null };
    this.streams.set(request.id, stream);
    this.post({ type: 'generate', request });
    const onAbort = (): void => this.abort(request.id);
    if (signal) {
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
    const streams = this.streams;
    const abort = (id: string): void => this.abort(id);
    return {
      async *[Symbol.asyncIterator](): AsyncGenerator<TokenEvent> {
        let finished = false;
        try {
          for (;;) {
            const next = stream.events.shift();
            if (next) {
              yield next;
              if (next.type === 'done') {
                finished = true;
                return;
              }
              continue;
            }
            if (stream.error) {
              finished = true;
              throw stream.error;
            }
            await new Promise<void>((res) => {
              stream.notify = res;
            });
            stream.notify = null;
          }
        } finally {
          signal?.removeEventListener('abort', onAbort);
          // A consumer that stops iterating early (client gone) must free the sequence.
          if (!finished) abort(request.id);
          streams.delete(request.id);
        }
      },
    };
  }

  score(request: ScoreRequest, signal?: AbortSignal): Promise<ScoreResult> {
    if (this.fatal) return Promise.reject(this.fatal);
    if (this.closed) return Promise.reject(new EngineError('shutting_down', 'the server is shutting down', { retryAfterSeconds: 5 }));
    if (!this.info) return Promise.reject(this.notReadyError());
    if (this.scores.has(request.id) || this.streams.has(request.id)) {
      return Promise.reject(new EngineError('invalid_request', `request id ${request.id} is already in use`));
    }
    return new Promise<ScoreResult>((resolve, reject) => {
      this.scores.set(request.id, { resolve, reject });
      this.post({ type: 'score', request });
      signal?.addEventListener('abort', () => this.abort(request.id), { once: true });
    });
  }

  abort(id: string): void {
    if (!this.closed || this.streams.has(id)) this.post({ type: 'abort', id });
  }

  private notReadyError(): EngineError {
    if (this.restarting) {
      return new EngineError('worker_restarting', 'The inference worker is restarting after a crash; the model is reloading.', { retryAfterSeconds: 5 });
    }
    return new EngineError('not_ready', 'the model is still loading', { retryAfterSeconds: 5 });
  }

  health(): EngineHealth {
    const s = this.stats;
    return {
      ready: this.info !== null && this.fatal === null,
      ...(this.restarting ? { notReady: 'The inference worker is restarting after a crash; the model is reloading.' } : {}),
      ...(this.fatal !== null ? { notReady: 'The inference worker failed and was not restarted.' } : {}),
      worker: this.fatal !== null ? 'failed' : this.restarting ? 'restarting' : this.info === null ? 'loading' : 'ready',
      workerRestarts: this.restarts,
      running: s?.running ?? 0,
      waiting: s?.waiting ?? 0,
      kvBytesUsed: s?.kvBytesUsed ?? 0,
      kvBytesCapacity: s?.kvBytesCapacity ?? 0,
      prefixCacheBytes: s?.prefixCacheBytes ?? 0,
      kvGatheredBytes: s?.gatheredKvBytes ?? 0,
      runner: s?.runner ?? {},
      ...(this.info?.weightPlan !== undefined ? { weightPlan: this.info.weightPlan } : {}),
    };
  }

  models(): readonly ModelCard[] {
    return [
      {
        id: this.modelId,
        contextLength: this.info?.contextLength ?? 0,
        hasChatTemplate: this.text.inline.hasChatTemplate,
        toolCallFormat: this.text.inline.toolFormat,
        vocabSize: this.info?.spec.vocabSize ?? 0,
        createdAt: this.createdAt,
        maxBytesPerToken: this.text.inline.tokenizer.maxBytesPerToken ?? null,
      },
    ];
  }

  tokenize(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]> {
    return this.text.encode(text, options?.addSpecialTokens ?? true);
  }

  detokenize(ids: readonly number[]): Promise<string> {
    return this.text.decode(ids);
  }

  tokenTexts(context: readonly number[], ids: readonly number[]): string[] {
    return this.text.inline.tokenizer.tokenTexts(context, ids, { skipSpecialTokens: true });
  }

  renderChat(messages: readonly ChatMessage[], options?: ChatRenderOptions): Promise<RenderedChat> {
    return this.text.render(messages, options);
  }

  /** Stops accepting, lets in-flight requests finish, then ends the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.post({ type: 'shutdown' });
    const timeout = new Promise<void>((res) => setTimeout(res, 30_000).unref());
    await Promise.race([this.workerExited, timeout]);
    await this.worker.terminate();
    await this.text.close();
  }
}

/** Starts the engine without waiting for the model; `ready` settles when it can serve. */
export function startLocalEngine(options: LocalEngineOptions): LocalEngine {
  return new LocalEngine(options);
}

/** Starts the engine and waits until the model is compiled and loaded. */
export async function createLocalEngine(options: LocalEngineOptions): Promise<LocalEngine> {
  const engine = new LocalEngine(options);
  await engine.ready;
  return engine;
}

function toEngineError(e: CoreErrorPayload): EngineError {
  return new EngineError(e.code, e.message, {
    ...(e.field !== null ? { field: e.field } : {}),
    ...(e.retryAfterSeconds !== null ? { retryAfterSeconds: e.retryAfterSeconds } : {}),
  });
}

type CoreErrorPayload = Extract<CoreOutput, { error: unknown }>['error'];
