import { EngineError } from '../../../src/engine/errors.js';
import type { EngineClient, EngineHealth, GenerateRequest, ModelCard, ScoreRequest, ScoreResult, TokenEvent } from '../../../src/engine/types.js';
import type { ChatMessage } from '../../../src/model/tokenizer-types.js';
import type { DroppedSpan } from '../../../src/policies/compression/types.js';

/**
 * A scripted EngineClient for wire-format tests: one character is one token
 * (id = char code), the reply is a fixed script, and it honours maxTokens,
 * stop strings, logprobs and the AbortSignal the way the contract says.
 */
export interface ScriptedEngineOptions {
  readonly reply?: string;
  readonly contextLength?: number;
  readonly hasChatTemplate?: boolean;
  /** Declares the token bound (one code point per token: at most 4 bytes); absent: no bound. */
  readonly maxBytesPerToken?: number;
  readonly ready?: boolean;
  /** Milliseconds between tokens (0: next microtask). */
  readonly tokenDelayMs?: number;
  /** Thrown from generate() (queue_full, ...). */
  readonly rejectWith?: EngineError;
  /** Thrown after this many tokens. */
  readonly failAfterTokens?: number;
}

interface ScriptedCompression {
  readonly original: number;
  readonly kept: number;
  readonly dropped: DroppedSpan[];
}

/**
 * A stand-in for the engine's context compression (the real one is tested in
 * the engine and end to end): keeps the protected segments and the first
 * tokens of the context segments up to the target (compressionRate as a token
 * target, else the policy's ratio), and reports like the engine does.
 */
function scriptedCompression(request: GenerateRequest): ScriptedCompression | null {
  if (request.servingPolicy?.kind !== 'context-compression') return null;
  const segments = request.segments ?? [{ role: 'context' as const, tokens: request.promptTokens }];
  const original = request.promptTokens.length;
  const protectedTokens = segments.filter((s) => s.role !== 'context').reduce((n, s) => n + s.tokens.length, 0);
  const rate = request.compressionRate ?? Number(request.servingPolicy.params['rate'] ?? 1);
  const target = rate > 1 ? rate : protectedTokens + Math.floor(rate * (original - protectedTokens));
  let room = Math.max(0, target - protectedTokens);
  const dropped: DroppedSpan[] = [];
  let kept = protectedTokens;
  segments.forEach((s, i) => {
    if (s.role !== 'context') return;
    const keep = Math.min(room, s.tokens.length);
    room -= keep;
    kept += keep;
    const ids = s.tokens.slice(keep);
    if (ids.length > 0) dropped.push({ segment: i, start: keep, end: s.tokens.length, tokens: ids, text: ids.map((id) => String.fromCharCode(id)).join('') });
  });
  return { original, kept, dropped };
}

function compressionReport(c: ScriptedCompression): { compressionRatio: number; details: Record<string, number> } {
  return { compressionRatio: c.kept / c.original, details: { originalTokens: c.original, compressedTokens: c.kept, compressMs: 3 } };
}

/** Rows the engine captures: every step (true), the first N steps (N), or none. */
function captureRows(request: GenerateRequest, emitted: number): number | null {
  const c = request.captureLogprobs;
  if (c === true) return emitted;
  if (typeof c === 'number' && c > 0) return Math.min(c, emitted);
  return null;
}

export class ScriptedEngine implements EngineClient {
  readonly requests: GenerateRequest[] = [];
  readonly aborted: string[] = [];
  running = 0;
  kvBytesUsed = 0;
  private readonly card: ModelCard;

  constructor(private readonly options: ScriptedEngineOptions = {}) {
    this.card = {
      id: 'scripted',
      contextLength: options.contextLength ?? 256,
      hasChatTemplate: options.hasChatTemplate ?? true,
      vocabSize: 65536,
      createdAt: 1700000000,
      ...(options.maxBytesPerToken !== undefined ? { maxBytesPerToken: options.maxBytesPerToken } : {}),
    };
  }

  generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<TokenEvent> {
    if (this.options.rejectWith) throw this.options.rejectWith;
    this.requests.push(request);
    const self = this;
    const script = this.options.reply ?? 'Hello world';
    const delay = this.options.tokenDelayMs ?? 0;
    return {
      async *[Symbol.asyncIterator]() {
        self.running++;
        self.kvBytesUsed += 1000;
        const compression = scriptedCompression(request);
        let text = '';
        let emitted = 0;
        let pending = '';
        try {
          for (let i = 0; ; i++) {
            if (signal?.aborted) {
              self.aborted.push(request.id);
              yield done('abort', '', null);
              return;
            }
            if (emitted >= request.sampling.maxTokens) {
              yield done('length', pending, null);
              return;
            }
            if (self.options.failAfterTokens !== undefined && emitted >= self.options.failAfterTokens) {
              throw new EngineError('engine_failed', 'worker exploded at /secret/path.ts:42');
            }
            const ch = script[i % script.length] as string;
            if (delay > 0) await new Promise((r) => setTimeout(r, delay));
            else await Promise.resolve();
            emitted++;
            pending += ch;
            const candidate = text + pending;
            const hit = request.sampling.stop.find((s) => candidate.includes(s));
            if (hit !== undefined) {
              const cut = candidate.slice(0, candidate.indexOf(hit)).slice(text.length);
              yield token(ch, cut);
              yield done('stop', '', hit);
              return;
            }
            // Hold back text that could still become a stop string.
            const holdable = request.sampling.stop.some((s) => [...Array(s.length).keys()].some((k) => k > 0 && candidate.endsWith(s.slice(0, k))));
            if (holdable) {
              yield token(ch, '');
              continue;
            }
            text += pending;
            const out = pending;
            pending = '';
            yield token(ch, out);
          }
        } finally {
          self.running--;
          self.kvBytesUsed -= 1000;
        }

        function token(ch: string, visible: string): TokenEvent {
          const id = ch.charCodeAt(0);
          const k = request.sampling.logprobs;
          return {
            type: 'token',
            tokenId: id,
            text: visible,
            tokenText: k === null ? '' : ch,
            logprob: k === null ? null : -0.5,
            topLogprobs:
              k === null
                ? null
                : [
                    { tokenId: id, logprob: -0.5, text: ch },
                    { tokenId: 63, logprob: -1.5, text: '?' },
                  ].slice(0, k),
          };
        }
        function done(finishReason: 'stop' | 'length' | 'abort', trailing: string, stopReason: string | null): TokenEvent {
          return {
            type: 'done',
            finishReason,
            text: trailing,
            usage: { promptTokens: request.promptTokens.length, completionTokens: emitted },
            stopReason,
            timings: { queueMs: 2, prefillMs: 1, totalMs: 5 },
            policy: {
              policy: request.policy,
              kind: request.servingPolicy?.kind ?? 'none',
              promptTokens: request.promptTokens.length,
              kvTokensRetained: request.promptTokens.length + emitted,
              contextTokens: request.promptTokens.length + emitted,
              compressionRatio: 1,
              attentionMassRetained: null,
              details: {},
              ...(compression ? compressionReport(compression) : {}),
            },
            ...(compression && request.returnDropped === true ? { dropped: compression.dropped } : {}),
            // Uniform rows over a 128-id vocabulary (ids are char codes): the shape the engine captures.
            ...(captureRows(request, emitted) !== null
              ? { capturedLogprobs: new Float32Array((captureRows(request, emitted) ?? 0) * 128).fill(-Math.log(128)) }
              : {}),
          };
        }
      },
    };
  }

  /** The HTTP layer never scores; shadow fidelity is tested against the real engine. */
  score(_request: ScoreRequest): Promise<ScoreResult> {
    return Promise.reject(new EngineError('engine_failed', 'the scripted engine does not score'));
  }

  abort(id: string): void {
    this.aborted.push(id);
  }

  health(): EngineHealth {
    return { ready: this.options.ready ?? true, running: this.running, waiting: 0, kvBytesUsed: this.kvBytesUsed, kvBytesCapacity: 10_000 };
  }

  models(): readonly ModelCard[] {
    return [this.card];
  }

  async tokenize(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]> {
    const ids = [...text].map((c) => c.charCodeAt(0));
    return options?.addSpecialTokens === false ? ids : [1, ...ids];
  }

  tokenTexts(_context: readonly number[], ids: readonly number[]): string[] {
    return ids.map((id) => String.fromCharCode(id));
  }

  async detokenize(ids: readonly number[]): Promise<string> {
    return ids
      .filter((id) => id !== 1)
      .map((id) => String.fromCharCode(id))
      .join('');
  }

  async renderChat(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): Promise<{ text: string; addSpecialTokens: boolean }> {
    if (!this.card.hasChatTemplate) throw new EngineError('no_chat_template', 'no template');
    return {
      text: messages.map((m) => `<${m.role}>${m.content}`).join('') + (options?.addGenerationPrompt === false ? '' : '<assistant>'),
      addSpecialTokens: true,
    };
  }

  async close(): Promise<void> {}
}
