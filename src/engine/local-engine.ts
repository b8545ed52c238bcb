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
import type { WeightDtype } from '../model/compile/decoder-graph.js';
import type { ChatMessage } from '../model/tokenizer-types.js';
import type { RenderedChat } from './text-processor.js';
import { TokenizerPool } from './tokenizer-pool.js';
import type { CoreOutput, CoreStats } from './engine-core.js';
import { EngineError } from './errors.js';
import type { EngineClient, EngineHealth, GenerateRequest, ModelCard, ScoreRequest, ScoreResult, TokenEvent } from './types.js';
import type { FromWorker, ReadyInfo, ToWorker, WorkerInit } from './worker-protocol.js';

export interface LocalEngineOptions {
  readonly modelDir: string;
  readonly servedModelName?: string;
  readonly cacheDir?: string;
  readonly maxConcurrent?: number;
  readonly maxQueue?: number;
  readonly kvBudgetBytes?: number;
  readonly weightDtype?: WeightDtype;
  readonly threads?: number;
  readonly contextLength?: number;
  readonly prefillChunk?: number;
  readonly chatTemplateFallback?: string;
  /** The expert-offload policy's params for MoE models (budgetBytes, bits, ...). */
  readonly expertOffload?: Readonly<Record<string, unknown>>;
  /** A local model directory scoring prompts for context compression; default: the served model. */
  readonly scorerModelDir?: string;
  readonly onProgress?: (message: string) => void;
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

export class LocalEngine implements EngineClient {
  readonly ready: Promise<void>;
  private readonly worker: Worker;
  private readonly text: TokenizerPool;
  private readonly streams = new Map<string, Stream>();
  private readonly scores = new Map<string, { resolve: (r: ScoreResult) => void; reject: (e: EngineError) => void }>();
  private info: ReadyInfo | null = null;
  private stats: CoreStats | null = null;
  private fatal: EngineError | null = null;
  private readonly modelId: string;
  private readonly createdAt = Math.floor(Date.now() / 1000);
  private closed = false;
  private readonly workerExited: Promise<void>;

  constructor(options: LocalEngineOptions) {
    const modelDir = resolve(options.modelDir);
    this.modelId = options.servedModelName ?? basename(modelDir);
    this.text = new TokenizerPool({
      modelDir,
      modelId: this.modelId,
      ...(options.chatTemplateFallback !== undefined ? { chatTemplateFallback: options.chatTemplateFallback } : {}),
      ...(options.tokenizerThreads !== undefined ? { size: options.tokenizerThreads } : {}),
    });
    const init: WorkerInit = {
      modelDir,
      cacheDir: resolve(options.cacheDir ?? '.cache/compiled'),
      weightDtype: options.weightDtype ?? 'fp32',
      threads: options.threads ?? availableParallelism(),
      maxConcurrent: options.maxConcurrent ?? 16,
      maxQueue: options.maxQueue ?? 256,
      kvBudgetBytes: options.kvBudgetBytes ?? DEFAULT_KV_BUDGET,
      contextLength: options.contextLength ?? null,
      prefillChunk: options.prefillChunk ?? 512,
      ...(options.expertOffload ? { expertOffload: options.expertOffload } : {}),
      ...(options.scorerModelDir ? { scorerModelDir: resolve(options.scorerModelDir) } : {}),
    };
    this.worker = new Worker(new URL('./worker-main.js', import.meta.url), { workerData: init });
    let markReady: () => void = () => undefined;
    let markFailed: (e: Error) => void = () => undefined;
    this.ready = new Promise<void>((res, rej) => {
      markReady = res;
      markFailed = rej;
    });
    // A failed start is reported through health() and generate(); callers that await `ready` see it too.
    this.ready.catch(() => undefined);
    this.worker.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'progress':
          options.onProgress?.(m.message);
          break;
        case 'ready':
          this.info = m.info;
          this.stats = m.stats;
          markReady();
          break;
        case 'outputs':
          this.stats = m.stats;
          this.deliver(m.outputs);
          break;
        case 'fatal':
          this.failAll(new EngineError('engine_failed', `the inference worker failed: ${m.message}`));
          markFailed(new WorkerFailure(m.message, m.stack));
          break;
      }
    });
    this.worker.on('error', (err) => {
      this.failAll(new EngineError('engine_failed', `the inference worker crashed: ${err.message}`));
      markFailed(err);
    });
    this.workerExited = new Promise<void>((res) => this.worker.once('exit', () => res()));
    this.worker.once('exit', () => {
      if (!this.closed) this.failAll(new EngineError('engine_failed', 'the inference worker exited'));
      markFailed(new Error('the inference worker exited before the model was ready'));
    });
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
    if (!this.info) throw new EngineError('not_ready', 'the model is still loading', { retryAfterSeconds: 5 });
    if (this.streams.has(request.id)) throw new EngineError('invalid_request', `request id ${request.id} is already in use`);
    const stream: Stream = { events: [], error: null, done: false, notify: null };
    this.streams.set(request.id, stream);
    this.post({ type: 'generate', request });
    const onAbort = (): void => this.abort(request.id);
    if (signal) {
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
    const self = this;
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
          if (!finished) self.abort(request.id);
          self.streams.delete(request.id);
        }
      },
    };
  }

  score(request: ScoreRequest, signal?: AbortSignal): Promise<ScoreResult> {
    if (this.fatal) return Promise.reject(this.fatal);
    if (this.closed) return Promise.reject(new EngineError('shutting_down', 'the server is shutting down', { retryAfterSeconds: 5 }));
    if (!this.info) return Promise.reject(new EngineError('not_ready', 'the model is still loading', { retryAfterSeconds: 5 }));
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

  health(): EngineHealth {
    const s = this.stats;
    return {
      ready: this.info !== null && this.fatal === null,
      running: s?.running ?? 0,
      waiting: s?.waiting ?? 0,
      kvBytesUsed: s?.kvBytesUsed ?? 0,
      kvBytesCapacity: s?.kvBytesCapacity ?? 0,
      runner: s?.runner ?? {},
    };
  }

  models(): readonly ModelCard[] {
    return [
      {
        id: this.modelId,
        contextLength: this.info?.contextLength ?? 0,
        hasChatTemplate: this.text.inline.hasChatTemplate,
        vocabSize: this.info?.spec.vocabSize ?? 0,
        createdAt: this.createdAt,
        maxBytesPerToken: this.text.inline.tokenizer.maxBytesPerToken ?? null,
      },
    ];
  }

  tokenize(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]> {
    return this.text.encode(text, options?.addSpecialTokens ?? true);
  }

  detokenize(ids: readonly number[]): string {
    return this.text.inline.tokenizer.decode(ids, { skipSpecialTokens: true });
  }

  tokenTexts(context: readonly number[], ids: readonly number[]): string[] {
    return this.text.inline.tokenizer.tokenTexts(context, ids, { skipSpecialTokens: true });
  }

  renderChat(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): Promise<RenderedChat> {
    return this.text.render(messages, options);
  }

  /** Stops accepting, lets in-flight requests finish, then ends the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
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
    ...(e.param !== null ? { param: e.param } : {}),
    ...(e.retryAfterSeconds !== null ? { retryAfterSeconds: e.retryAfterSeconds } : {}),
  });
}

type CoreErrorPayload = Extract<CoreOutput, { error: unknown }>['error'];
