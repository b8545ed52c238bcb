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

export class EngineError extends Error {
  readonly code: EngineErrorCode;
  /** The request parameter at fault, when there is one (OpenAI's `param`). */
  readonly param: string | null;
  /** Seconds a client should wait before retrying (queue_full, not_ready). */
  readonly retryAfterSeconds: number | null;

  constructor(code: EngineErrorCode, message: string, options: { param?: string; retryAfterSeconds?: number } = {}) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
    this.param = options.param ?? null;
    this.retryAfterSeconds = options.retryAfterSeconds ?? null;
  }
}
