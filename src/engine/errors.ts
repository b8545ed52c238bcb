/**
 * Errors the engine raises toward the API layer. The server maps `code` to an
 * HTTP status and an OpenAI-shaped error body; the engine never builds JSON.
 */
export type EngineErrorCode =
  | 'context_length_exceeded'
  | 'queue_full'
  | 'no_chat_template'
  | 'invalid_request'
  | 'not_ready'
  | 'shutting_down'
  /** The inference worker died; a new one is reloading the model (503, retryable). */
  | 'worker_restarting'
  | 'engine_failed';

/**
 * The part of a request an error is about, in the engine's terms; the API
 * layer names the HTTP parameter (server/errors.ts), the engine never does.
 */
export type RequestField = 'promptTokens' | 'promptLength' | 'chat' | 'maxTokens' | 'policy' | 'logitBias' | 'responseFormat';

export class EngineError extends Error {
  readonly code: EngineErrorCode;
  /** The part of the request at fault, when there is one. */
  readonly field: RequestField | null;
  /** Seconds a client should wait before retrying (queue_full, not_ready). */
  readonly retryAfterSeconds: number | null;

  constructor(code: EngineErrorCode, message: string, options: { field?: RequestField; retryAfterSeconds?: number } = {}) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
    this.field = options.field ?? null;
    this.retryAfterSeconds = options.retryAfterSeconds ?? null;
  }
}
