/**
 * The Responses API's objects and streaming events, built in one place for both
 * transports (websocket /v1/responses and HTTP POST /v1/responses, JSON or SSE):
 * response.created, response.output_item.added, response.content_part.added,
 * response.output_text.delta..., response.output_text.done,
 * response.content_part.done, response.output_item.done, response.completed
 * (status completed, incomplete or cancelled). Sequence numbers are the
 * transport's.
 */
import type { ChoiceDone } from './generation.js';
import { newId, unixNow } from './ids.js';
import { capObject, type CapObject } from './policy.js';
import { constraintCap } from './structured-output.js';
import { cachedPromptTokens, type PreparedGeneration } from './choice-runner.js';

export type ResponseStatus = 'completed' | 'incomplete' | 'cancelled';
export type ResponseEvent = Record<string, unknown> & { readonly type: string };

export class ResponseEvents {
  readonly itemId = newId('msg_');
  private readonly createdAt = unixNow();

  constructor(
    private readonly prep: PreparedGeneration,
    /** Echoed in every response object (previous_response_id, instructions, ...). */
    private readonly extra: Readonly<Record<string, unknown>> = {},
  ) {}

  private base(): Record<string, unknown> {
    return { id: this.prep.id, object: 'response', created_at: this.createdAt, model: this.prep.card.id, ...this.extra };
  }

  private where(): Record<string, unknown> {
    return { response_id: this.prep.id, item_id: this.itemId, output_index: 0, content_index: 0 };
  }

  private message(text: string, status: 'in_progress' | 'completed' | 'incomplete'): Record<string, unknown> {
    return { type: 'message', id: this.itemId, status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] };
  }

  /** Everything up to the first delta. */
  opening(): ResponseEvent[] {
    const cap: CapObject = capObject(this.prep.plan, []);
    return [
      { type: 'response.created', response: { ...this.base(), status: 'in_progress', output: [], usage: null, cap } },
      { type: 'response.output_item.added', response_id: this.prep.id, output_index: 0, item: { ...this.message('', 'in_progress'), content: [] } },
      { type: 'response.content_part.added', ...this.where(), part: { type: 'output_text', text: '', annotations: [] } },
    ];
  }

  delta(text: string): ResponseEvent {
    return { type: 'response.output_text.delta', ...this.where(), delta: text };
  }

  /** The finished response object (also the HTTP JSON body). */
  response(status: ResponseStatus, text: string, done: ChoiceDone | null): Record<string, unknown> {
    const inputTokens = this.prep.promptTokenCount;
    const outputTokens = done?.usage.completionTokens ?? 0;
    return {
      ...this.base(),
      status,
      incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
      output: [this.message(text, status === 'completed' ? 'completed' : 'incomplete')],
      output_text: text,
      usage: {
        input_tokens: inputTokens,
        input_tokens_details: { cached_tokens: cachedPromptTokens([done]) },
        output_tokens: outputTokens,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: inputTokens + outputTokens,
      },
      finish_reason: done?.finishReason ?? 'abort',
      cap: capObject(this.prep.plan, [done?.report ?? null], done?.dropped ?? null, constraintCap(this.prep.constraint, [done?.constraint])),
    };
  }

  /** Everything after the last delta. */
  closing(status: ResponseStatus, text: string, done: ChoiceDone | null): ResponseEvent[] {
    const itemStatus = status === 'completed' ? 'completed' : 'incomplete';
    return [
      { type: 'response.output_text.done', ...this.where(), text },
      { type: 'response.content_part.done', ...this.where(), part: { type: 'output_text', text, annotations: [] } },
      { type: 'response.output_item.done', response_id: this.prep.id, output_index: 0, item: this.message(text, itemStatus) },
      { type: 'response.completed', response: this.response(status, text, done) },
    ];
  }
}

/** completed, or incomplete when the token limit ended it, or cancelled. */
export function responseStatus(cancelled: boolean, done: ChoiceDone | null): ResponseStatus {
  return cancelled ? 'cancelled' : done?.finishReason === 'length' ? 'incomplete' : 'completed';
}
