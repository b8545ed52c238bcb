import { RoutingError } from '../cap/router.js';
import { EngineError, type EngineErrorCode, type RequestField } from '../engine/errors.js';
import { ContextLengthExceededError } from '../policies/overflow/errors.js';

/**
 * Every error the API answers with, in one table: code -> HTTP status and
 * OpenAI error type. Codes are never reused for a different meaning.
 *
 * | code                      | status | type                  |
 * |---------------------------|--------|-----------------------|
 * | invalid_request           | 400    | invalid_request_error |
 * | invalid_json              | 400    | invalid_request_error |
 * | unknown_parameter         | 400    | invalid_request_error |
 * | unsupported_parameter     | 400    | invalid_request_error |
 * | context_length_exceeded   | 400    | invalid_request_error |
 * | no_chat_template          | 400    | invalid_request_error |
 * | unknown_policy            | 400    | invalid_request_error |
 * | policy_not_allowed        | 400    | invalid_request_error |
 * | invalid_api_key           | 401    | authentication_error  |
 * | model_not_found           | 404    | invalid_request_error |
 * | not_found                 | 404    | invalid_request_error |
 * | method_not_allowed        | 405    | invalid_request_error |
 * | body_too_large            | 413    | invalid_request_error |
 * | unsupported_media_type    | 415    | invalid_request_error |
 * | upgrade_required          | 426    | invalid_request_error |
 * | queue_full                | 429    | rate_limit_error      |
 * | internal_error            | 500    | server_error          |
 * | engine_failed             | 500    | server_error          |
 * | not_ready                 | 503    | service_unavailable   |
 * | shutting_down             | 503    | service_unavailable   |
 * | worker_restarting         | 503    | service_unavailable   |
 * | request_timeout           | 504    | timeout_error         |
 * | response_in_progress      | (ws)   | invalid_request_error |
 * | unknown_event             | (ws)   | invalid_request_error |
 */
const TABLE = {
  invalid_request: { status: 400, type: 'invalid_request_error' },
  invalid_json: { status: 400, type: 'invalid_request_error' },
  unknown_parameter: { status: 400, type: 'invalid_request_error' },
  unsupported_parameter: { status: 400, type: 'invalid_request_error' },
  context_length_exceeded: { status: 400, type: 'invalid_request_error' },
  no_chat_template: { status: 400, type: 'invalid_request_error' },
  unknown_policy: { status: 400, type: 'invalid_request_error' },
  policy_not_allowed: { status: 400, type: 'invalid_request_error' },
  invalid_api_key: { status: 401, type: 'authentication_error' },
  model_not_found: { status: 404, type: 'invalid_request_error' },
  not_found: { status: 404, type: 'invalid_request_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  body_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  upgrade_required: { status: 426, type: 'invalid_request_error' },
  queue_full: { status: 429, type: 'rate_limit_error' },
  internal_error: { status: 500, type: 'server_error' },
  engine_failed: { status: 500, type: 'server_error' },
  not_ready: { status: 503, type: 'service_unavailable' },
  shutting_down: { status: 503, type: 'service_unavailable' },
  worker_restarting: { status: 503, type: 'service_unavailable' },
  request_timeout: { status: 504, type: 'timeout_error' },
  response_in_progress: { status: 400, type: 'invalid_request_error' },
  unknown_event: { status: 400, type: 'invalid_request_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type ApiErrorCode = keyof typeof TABLE;

export interface ApiErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: string;
    readonly param: string | null;
    readonly code: ApiErrorCode;
  };
}

export class ApiError extends Error {
  readonly code: ApiErrorCode;
  readonly statusCode: number;
  readonly type: string;
  readonly param: string | null;
  readonly retryAfterSeconds: number | null;

  constructor(code: ApiErrorCode, message: string, options: { param?: string | null; retryAfterSeconds?: number | null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.statusCode = TABLE[code].status;
    this.type = TABLE[code].type;
    this.param = options.param ?? null;
    this.retryAfterSeconds = options.retryAfterSeconds ?? null;
  }

  toBody(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const ENGINE_CODES: Record<EngineErrorCode, ApiErrorCode> = {
  context_length_exceeded: 'context_length_exceeded',
  queue_full: 'queue_full',
  no_chat_template: 'no_chat_template',
  invalid_request: 'invalid_request',
  not_ready: 'not_ready',
  shutting_down: 'shutting_down',
  worker_restarting: 'worker_restarting',
  engine_failed: 'engine_failed',
};

/** Seconds a client is told to wait when the engine did not say. */
const DEFAULT_RETRY_AFTER: Partial<Record<ApiErrorCode, number>> = { queue_full: 1, not_ready: 5, shutting_down: 5, worker_restarting: 5 };

/** The HTTP parameter each request field of an engine error is about (OpenAI's `param`). */
const FIELD_PARAM: Record<RequestField, string> = {
  promptTokens: 'prompt',
  promptLength: 'messages',
  chat: 'messages',
  maxTokens: 'max_tokens',
  policy: 'cap.policy',
  logitBias: 'logit_bias',
  responseFormat: 'response_format',
};

function fromEngineError(err: EngineError): ApiError {
  const code = ENGINE_CODES[err.code];
  // engine_failed carries internals (stack traces, ORT messages); the client gets none of it.
  const message = code === 'engine_failed' ? 'The engine failed while processing the request.' : err.message;
  const retryAfterSeconds = err.retryAfterSeconds ?? DEFAULT_RETRY_AFTER[code] ?? null;
  return new ApiError(code, message, { param: err.field === null ? null : FIELD_PARAM[err.field], retryAfterSeconds });
}

interface FastifyLikeError {
  code?: unknown;
  statusCode?: unknown;
  message?: unknown;
}

function fromFastifyError(err: FastifyLikeError): ApiError | null {
  const code = typeof err.code === 'string' ? err.code : '';
  const status = typeof err.statusCode === 'number' ? err.statusCode : 0;
  const message = typeof err.message === 'string' ? err.message : '';
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError('body_too_large', 'Request body is larger than the server accepts (server.bodyLimitBytes).');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError('unsupported_media_type', 'Unsupported Content-Type: send application/json.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError('invalid_json', 'The request body is empty; expected a JSON object.');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError('invalid_json', `The request body is not valid JSON: ${message}`);
    default:
      break;
  }
  if (status === 400 && err instanceof SyntaxError) {
    return new ApiError('invalid_json', `The request body is not valid JSON: ${message}`);
  }
  if (status === 413) return new ApiError('body_too_large', 'Request body is larger than the server accepts (server.bodyLimitBytes).');
  if (status === 415) return new ApiError('unsupported_media_type', 'Unsupported Content-Type: send application/json.');
  if (status >= 400 && status < 500) return new ApiError('invalid_request', message || 'Bad request.');
  return null;
}

/** Maps anything thrown while serving a request to the API error the client sees. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof EngineError) return fromEngineError(err);
  if (err instanceof RoutingError) return new ApiError(err.code, err.message, { param: err.param });
  if (err instanceof ContextLengthExceededError) return new ApiError('context_length_exceeded', err.message, { param: err.param });
  if (err !== null && typeof err === 'object') {
    const mapped = fromFastifyError(err);
    if (mapped !== null) return mapped;
  }
  return new ApiError('internal_error', 'Internal server error.');
}
