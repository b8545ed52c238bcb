/** What the engine needs from a tokenizer; implemented over @huggingface/tokenizers. */
export interface TextTokenizer {
  readonly vocabSize: number;
  /** The most input bytes one token can stand for, when provable (token-bound.ts); null or absent: no bound. */
  readonly maxBytesPerToken?: number | null;
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** The vocabulary piece for an id (e.g. "▁the", "<0x0A>"), for logprobs' `token` fields. */
  idToPiece(id: number): string;
  /**
   * Text deltas for a growing id sequence; never splits a UTF-8 character across deltas.
   * `context` (the prompt) is decoded with the ids but never emitted: the deltas join to
   * decode(context + ids) minus decode(context).
   */
  createDecodeStream(options?: { skipSpecialTokens?: boolean; context?: readonly number[] }): DecodeStream;
  /** The string of `id` after `context` (model/token-text.ts): logprob and echoed-prompt token strings. */
  tokenText(context: readonly number[], id: number, options?: { skipSpecialTokens?: boolean }): string;
  /** tokenText for the alternatives at one position, kept distinct (model/token-text.ts). */
  tokenTexts(context: readonly number[], ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string[];
  /** What each token id adds to the text as bytes (model/token-bytes.ts); null for special tokens. For constrained decoding. */
  tokenBytes?(): readonly (Uint8Array | null)[];
}

export interface DecodeStream {
  /** Feeds one id; returns the newly completed text (possibly empty). */
  push(id: number): string;
  /** Whatever is still held back at the end of generation. */
  flush(): string;
  /** The strings these ids would each add after the ids so far (none is pushed): logprob strings at one position. */
  peek(ids: readonly number[]): string[];
}

/** An assistant turn's tool call as chat templates read it (transformers' shape: arguments as an object). */
export interface ChatToolCall {
  readonly id: string;
  readonly type: 'function';
  readonly function: { readonly name: string; readonly arguments: unknown };
}

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant' | 'tool';
  readonly content: string;
  /** Assistant turns that called tools. */
  readonly tool_calls?: readonly ChatToolCall[];
  /** Tool turns: which call this answers, and the function's name. */
  readonly tool_call_id?: string;
  readonly name?: string;
}

export interface ChatRenderOptions {
  readonly addGenerationPrompt?: boolean;
  /** OpenAI-shaped tool definitions ({type: 'function', function: {...}}), passed to the template as `tools`. */
  readonly tools?: readonly unknown[];
}

/** How a model writes tool calls, as its chat template shows: Hermes / Qwen <tool_call>, Llama 3 JSON, Mistral [TOOL_CALLS]. */
export type ToolCallFormat = 'hermes' | 'llama3' | 'mistral';

export interface ChatTemplate {
  /** Renders messages to the prompt text; with addGenerationPrompt the assistant turn is opened. */
  render(messages: readonly ChatMessage[], options?: ChatRenderOptions): string;
  /** True when the rendered text already starts with the BOS token, so encoding must not add another. */
  readonly rendersBos: boolean;
  /** The tool-call format when the template renders `tools`; null: it ignores them (describe tools in a system message instead). */
  readonly toolFormat: ToolCallFormat | null;
}
