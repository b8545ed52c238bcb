import { EngineError } from '../engine/errors.js';
import type { EngineClient, EngineHealth, GenerateRequest, ModelCard, ScoreRequest, ScoreResult, TokenEvent } from '../engine/types.js';
import type { ChatMessage, ChatRenderOptions } from '../model/tokenizer-types.js';

/**
 * Stands in for the engine while the model is generated, compiled and loaded,
 * so the server can listen (and /health answer 503) from the first second.
 */
export class DeferredEngine implements EngineClient {
  private inner: EngineClient | null = null;

  attach(engine: EngineClient): void {
    this.inner = engine;
  }

  private require(): EngineClient {
    if (this.inner === null) throw new EngineError('not_ready', 'The model is still loading.', { retryAfterSeconds: 5 });
    return this.inner;
  }

  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<TokenEvent> {
    return this.require().generate(request, signal);
  }

  score(request: ScoreRequest, signal?: AbortSignal): Promise<ScoreResult> {
    try {
      return this.require().score(request, signal);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  abort(id: string): void {
    this.inner?.abort(id);
  }

  health(): EngineHealth {
    return this.inner?.health() ?? { ready: false, running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0 };
  }

  models(): readonly ModelCard[] {
    return this.require().models();
  }

  async tokenize(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]> {
    return this.require().tokenize(text, options);
  }

  async detokenize(ids: readonly number[]): Promise<string> {
    return this.require().detokenize(ids);
  }

  tokenTexts(context: readonly number[], ids: readonly number[]): string[] {
    return this.require().tokenTexts(context, ids);
  }

  async renderChat(messages: readonly ChatMessage[], options?: ChatRenderOptions): Promise<{ text: string; addSpecialTokens: boolean }> {
    return this.require().renderChat(messages, options);
  }

  async close(): Promise<void> {
    await this.inner?.close();
  }
}
