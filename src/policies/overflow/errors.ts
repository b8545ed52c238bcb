/**
 * The one overflow error: the request cannot be served within the window. The
 * message follows OpenAI's wording and states both numbers; the server maps
 * it to HTTP 400 with code `context_length_exceeded`.
 */
export class ContextLengthExceededError extends Error {
  readonly code = 'context_length_exceeded' as const;
  readonly statusCode = 400;
  readonly param = 'messages';
  readonly requestedTokens: number;

  constructor(
    readonly promptTokens: number,
    readonly maxTokens: number,
    readonly contextWindow: number,
    /** Why the configured mode could not bring the request into the window; null for mode `error`. */
    readonly reason: string | null = null,
  ) {
    const requested = promptTokens + maxTokens;
    super(
      `This model's maximum context length is ${contextWindow} tokens. However, you requested ${requested} tokens ` +
        `(${promptTokens} in the messages, ${maxTokens} in the completion). ` +
        (reason === null ? 'Please reduce the length of the messages or completion.' : `${reason} Please reduce the length of the messages or completion.`),
    );
    this.name = 'ContextLengthExceededError';
    this.requestedTokens = requested;
  }
}
