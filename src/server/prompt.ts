import type { Config } from '../config/schema.js';
import type { EngineClient, ModelCard } from '../engine/types.js';
import type { ChatMessage } from '../model/tokenizer-types.js';
import { ApiError } from './errors.js';

type WireMessage = {
  readonly role: 'system' | 'developer' | 'user' | 'assistant';
  readonly content: string | readonly { readonly type: 'text'; readonly text: string }[];
};

/** Resolves the requested model id; no id means the (only) served model. */
export function resolveModel(engine: EngineClient, requested: string | null | undefined): ModelCard {
  const cards = engine.models();
  if (requested === null || requested === undefined) {
    const first = cards[0];
    if (first === undefined) throw new ApiError('model_not_found', 'No model is being served.', { param: 'model' });
    return first;
  }
  const card = cards.find((c) => c.id === requested);
  if (card === undefined) {
    throw new ApiError('model_not_found', `The model \`${requested}\` does not exist. Served: ${cards.map((c) => c.id).join(', ')}.`, { param: 'model' });
  }
  return card;
}

/** The model's context length, capped by `model.contextLength` in the config. */
export function contextLimit(card: ModelCard, config: Config): number {
  const cap = config.model.contextLength;
  return cap === undefined ? card.contextLength : Math.min(card.contextLength, cap);
}

/** OpenAI's developer role is a system message to the models we serve; text parts join like vLLM's. */
export function toChatMessages(messages: readonly WireMessage[]): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('\n'),
  }));
}

/** Renders with the model's chat template (the engine applies `model.chatTemplateFallback` when the checkpoint has none). */
export function renderChat(engine: EngineClient, card: ModelCard, messages: readonly ChatMessage[]): { text: string; addSpecialTokens: boolean } {
  if (!card.hasChatTemplate) {
    throw new ApiError(
      'no_chat_template',
      `The model \`${card.id}\` has no chat template, so chat completions are unavailable; use /v1/completions, or set model.chatTemplateFallback in the config.`,
      { param: 'messages' },
    );
  }
  return engine.renderChat(messages);
}

export function chatPromptTokens(engine: EngineClient, card: ModelCard, messages: readonly WireMessage[]): number[] {
  const rendered = renderChat(engine, card, toChatMessages(messages));
  return engine.tokenize(rendered.text, { addSpecialTokens: rendered.addSpecialTokens });
}

export function completionPromptTokens(engine: EngineClient, prompt: string | readonly number[] | readonly string[] | readonly (readonly number[])[]): number[] {
  if (typeof prompt === 'string') return engine.tokenize(prompt, { addSpecialTokens: true });
  const first = prompt[0];
  if (typeof first === 'string') return engine.tokenize(first, { addSpecialTokens: true });
  if (Array.isArray(first)) return [...(first as readonly number[])];
  return [...(prompt as readonly number[])];
}

/**
 * The completion budget: the request's max_tokens, or whatever context remains.
 * A prompt that leaves no room, or a budget that overflows, is a 400 stating
 * the limit and the counts (no overflow policy applies yet).
 */
export function resolveMaxTokens(promptTokens: number, requested: number | null | undefined, limit: number, promptParam: string, maxParam: string): number {
  if (promptTokens >= limit) {
    throw new ApiError(
      'context_length_exceeded',
      `This model's maximum context length is ${limit} tokens. However, your request has ${promptTokens} input tokens, which leaves no room for a completion. Please reduce the length of the input.`,
      { param: promptParam },
    );
  }
  if (requested === null || requested === undefined) return limit - promptTokens;
  if (promptTokens + requested > limit) {
    throw new ApiError(
      'context_length_exceeded',
      `This model's maximum context length is ${limit} tokens. However, you requested ${promptTokens + requested} tokens (${promptTokens} in the input, ${requested} in the completion). Please reduce the length of the input or of the completion.`,
      { param: maxParam },
    );
  }
  return requested;
}
