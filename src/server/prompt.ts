import type { Config } from '../config/schema.js';
import type { EngineClient, ModelCard } from '../engine/types.js';
import type { ChatMessage } from '../model/tokenizer-types.js';
import type { PromptSegment } from '../policies/compression/types.js';
import { ApiError } from './errors.js';
import { chatSegments, completionSegments } from './prompt-segments.js';
import { historyMessages, type ToolsSetup, type WireToolCall } from './tools.js';

type WireMessage = {
  readonly role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  readonly content: string | readonly { readonly type: 'text'; readonly text: string }[] | null;
  readonly tool_calls?: readonly WireToolCall[] | null;
  readonly tool_call_id?: string | null;
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

/**
 * OpenAI's developer role is a system message to the models we serve; text parts join like vLLM's.
 * Tool calls and tool turns, and the tools themselves when the template does not render them, go through tools.ts.
 */
export function toChatMessages(messages: readonly WireMessage[], tools: ToolsSetup | null = null): ChatMessage[] {
  return historyMessages(
    messages.map((m, index) => ({
      role: m.role === 'developer' ? 'system' : m.role,
      content: m.content === null ? '' : typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join('\n'),
      toolCalls: m.tool_calls ?? null,
      toolCallId: m.tool_call_id ?? null,
      index,
    })),
    tools,
  );
}

/** Renders with the model's chat template (the engine applies `model.chatTemplateFallback` when the checkpoint has none). */
export async function renderChat(
  engine: EngineClient,
  card: ModelCard,
  messages: readonly ChatMessage[],
  options: { addGenerationPrompt?: boolean; continueFinalMessage?: boolean; tools?: readonly unknown[] } = {},
): Promise<{ text: string; addSpecialTokens: boolean }> {
  if (!card.hasChatTemplate) {
    throw new ApiError(
      'no_chat_template',
      `The model \`${card.id}\` has no chat template, so chat completions are unavailable; use /v1/completions, or set model.chatTemplateFallback in the config.`,
      { param: 'messages' },
    );
  }
  if (options.continueFinalMessage !== true) {
    return engine.renderChat(messages, {
      addGenerationPrompt: options.addGenerationPrompt ?? true,
      ...(options.tools !== undefined ? { tools: options.tools } : {}),
    });
  }
  // vLLM's continue_final_message: the final message stays open (its end-of-turn text is cut) for the model to continue.
  if (options.addGenerationPrompt === true) {
    throw new ApiError('invalid_request', "'continue_final_message' and 'add_generation_prompt' cannot both be true.", { param: 'continue_final_message' });
  }
  const rendered = await engine.renderChat(messages, { addGenerationPrompt: false });
  const final = messages[messages.length - 1]?.content ?? '';
  const at = rendered.text.lastIndexOf(final);
  if (final === '' || at < 0) {
    throw new ApiError('invalid_request', "'continue_final_message' needs the final message's text in the rendered chat, and it is not there.", {
      param: 'continue_final_message',
    });
  }
  return { ...rendered, text: rendered.text.slice(0, at + final.length) };
}

/** The prompt as the request gave it, tokenized whole, with its segments on demand. */
export interface PromptInput {
  /** The whole prompt tokenized as one text: what the engine gets unless segments are needed. */
  readonly tokens: readonly number[];
  /** The request parameter that carries the prompt (named by errors). */
  readonly param: 'messages' | 'prompt';
  /** Role-tagged segments (one more tokenization pass, so only when a policy or overflow mode needs them); their concatenation replaces `tokens`. */
  segments(): Promise<PromptSegment[]>;
}

export async function chatPrompt(engine: EngineClient, card: ModelCard, wire: readonly WireMessage[], tools: ToolsSetup | null = null): Promise<PromptInput> {
  const messages = toChatMessages(wire, tools);
  const rendered = await renderChat(engine, card, messages, tools?.native === true ? { tools: tools.tools } : {});
  return {
    tokens: await engine.tokenize(rendered.text, { addSpecialTokens: rendered.addSpecialTokens }),
    param: 'messages',
    segments: () => chatSegments(engine, async (m) => (await engine.renderChat(m)).text, messages, rendered),
  };
}

/** A completions `prompt`, one PromptInput per prompt of a list (a string or an id list is one). */
export async function completionPrompts(
  engine: EngineClient,
  prompt: string | readonly number[] | readonly string[] | readonly (readonly number[])[],
): Promise<PromptInput[]> {
  if (typeof prompt === 'string' || typeof prompt[0] === 'number') return [await completionPrompt(engine, prompt)];
  return Promise.all((prompt as readonly (string | readonly number[])[]).map((p) => completionPrompt(engine, typeof p === 'string' ? p : [p])));
}

export async function completionPrompt(
  engine: EngineClient,
  prompt: string | readonly number[] | readonly string[] | readonly (readonly number[])[],
): Promise<PromptInput> {
  const tokens = await completionPromptTokens(engine, prompt);
  return { tokens, param: 'prompt', segments: () => completionSegments(engine, tokens) };
}

async function completionPromptTokens(
  engine: EngineClient,
  prompt: string | readonly number[] | readonly string[] | readonly (readonly number[])[],
): Promise<number[]> {
  if (typeof prompt === 'string') return engine.tokenize(prompt, { addSpecialTokens: true });
  const first = prompt[0];
  if (typeof first === 'string') return engine.tokenize(first, { addSpecialTokens: true });
  if (Array.isArray(first)) return [...(first as readonly number[])];
  return [...(prompt as readonly number[])];
}
