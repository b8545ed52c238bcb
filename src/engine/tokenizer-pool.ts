/**
 * Tokenization, detokenization and chat-template rendering off the HTTP thread.
 * Inputs up to INLINE_CHARS characters (INLINE_IDS ids to decode) are handled
 * inline (a few milliseconds at most, cheaper than a message round trip);
 * anything larger goes to a small pool of worker threads,
 * each job to the worker with the fewest pending, so a multi-megabyte prompt
 * holds one worker, never the event loop (DESIGN: the HTTP thread never blocks,
 * never tokenizes big inputs).
 */
import { Worker } from 'node:worker_threads';
import type { ChatMessage, ChatRenderOptions } from '../model/tokenizer-types.js';
import { EngineError } from './errors.js';
import { TextProcessor, type RenderedChat } from './text-processor.js';
import type { FromTokenizer, ToTokenizer, TokenizerWorkerInit } from './tokenizer-protocol.js';

/** Characters below which work runs inline on the calling thread. */
export const INLINE_CHARS = 4096;
/** Ids below which decoding runs inline (stories260K: ~1 ms per 1,000 ids, a million ids ~6 s). */
export const INLINE_IDS = 1024;

type Pending = { readonly resolve: (m: FromTokenizer) => void; readonly reject: (e: Error) => void };

interface PoolWorker {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
}

export interface TokenizerPoolOptions {
  readonly modelDir: string;
  readonly modelId: string;
  readonly chatTemplateFallback?: string;
  /** Worker threads (default 1): each holds a copy of the tokenizer. */
  readonly size?: number;
}

export class TokenizerPool {
  /** The inline processor, also what answers `hasChatTemplate` and token strings (a few ids each). */
  readonly inline: TextProcessor;
  private readonly workers: PoolWorker[] = [];
  private readonly init: TokenizerWorkerInit;
  private readonly size: number;
  private nextId = 1;
  private closed = false;

  constructor(options: TokenizerPoolOptions) {
    this.inline = new TextProcessor(options.modelDir, options.chatTemplateFallback, options.modelId);
    this.init = {
      modelDir: options.modelDir,
      modelId: options.modelId,
      ...(options.chatTemplateFallback !== undefined ? { chatTemplateFallback: options.chatTemplateFallback } : {}),
    };
    this.size = Math.max(1, options.size ?? 1);
  }

  async encode(text: string, addSpecialTokens: boolean): Promise<number[]> {
    if (text.length <= INLINE_CHARS) return this.inline.encode(text, addSpecialTokens);
    const m = await this.call({ id: 0, op: 'encode', text, addSpecialTokens });
    if (!('tokens' in m)) throw new Error('internal: the tokenizer worker answered an encode with no tokens');
    return Array.from(m.tokens);
  }

  async decode(ids: readonly number[]): Promise<string> {
    if (ids.length <= INLINE_IDS) return this.inline.decode(ids);
    // Float64: ids are validated as non-negative integers, not as int32 (an out-of-range id must decode as it does inline).
    const packed = Float64Array.from(ids);
    const m = await this.call({ id: 0, op: 'decode', ids: packed }, [packed.buffer]);
    if (!('decoded' in m)) throw new Error('internal: the tokenizer worker answered a decode with no text');
    return m.decoded;
  }

  async render(messages: readonly ChatMessage[], options: ChatRenderOptions = {}): Promise<RenderedChat> {
    let chars = 0;
    for (const msg of messages) chars += msg.content.length;
    if (chars <= INLINE_CHARS) return this.inline.render(messages, options);
    const m = await this.call({
      id: 0,
      op: 'render',
      messages,
      addGenerationPrompt: options.addGenerationPrompt ?? true,
      ...(options.tools ? { tools: options.tools } : {}),
    });
    if (!('text' in m)) throw new Error('internal: the tokenizer worker answered a render with no text');
    return { text: m.text, addSpecialTokens: m.addSpecialTokens };
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = this.workers.splice(0);
    for (const w of all) this.failPending(w, new EngineError('shutting_down', 'the server is shutting down'));
    await Promise.all(all.map((w) => w.worker.terminate()));
  }

  private call(message: ToTokenizer, transfer: ArrayBuffer[] = []): Promise<FromTokenizer> {
    if (this.closed) return Promise.reject(new EngineError('shutting_down', 'the server is shutting down'));
    const w = this.pick();
    const id = this.nextId++;
    return new Promise<FromTokenizer>((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      w.worker.postMessage({ ...message, id }, transfer);
    }).then((m) => {
      if (!m.ok) throw new EngineError(m.code, m.message, m.field !== null ? { field: m.field } : {});
      return m;
    });
  }

  /** The least busy worker, starting one while the pool is below its size. */
  private pick(): PoolWorker {
    let best: PoolWorker | null = null;
    for (const w of this.workers) if (best === null || w.pending.size < best.pending.size) best = w;
    if (best !== null && (best.pending.size === 0 || this.workers.length >= this.size)) return best;
    return this.spawn();
  }

  private spawn(): PoolWorker {
    const worker = new Worker(new URL('./tokenizer-worker.js', import.meta.url), { workerData: this.init });
    worker.unref();
    const w: PoolWorker = { worker, pending: new Map() };
    worker.on('message', (m: FromTokenizer) => {
      const p = w.pending.get(m.id);
      if (!p) return;
      w.pending.delete(m.id);
      p.resolve(m);
    });
    const gone = (err: Error): void => {
      const i = this.workers.indexOf(w);
      if (i >= 0) this.workers.splice(i, 1);
      this.failPending(w, new EngineError('engine_failed', `a tokenizer worker failed: ${err.message}`));
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new Error(`exited with code ${code}`)));
    this.workers.push(w);
    return w;
  }

  private failPending(w: PoolWorker, err: Error): void {
    for (const p of w.pending.values()) p.reject(err);
    w.pending.clear();
  }
}
