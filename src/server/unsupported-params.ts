import { ApiError } from './errors.js';

/**
 * OpenAI (and vLLM) parameters capserve knows but does not implement. They get
 * a 400 naming them instead of the generic "unrecognized argument", so a client
 * learns that the feature is missing rather than misspelled.
 */
const UNSUPPORTED_TOP_LEVEL = [
  'functions',
  'function_call',
  'audio',
  'modalities',
  'prediction',
  'web_search_options',
  'reasoning_effort',
  'verbosity',
  'store',
  'metadata',
  'service_tier',
  'prompt_cache_key',
  'safety_identifier',
  // JSON goes through response_format; the pattern extensions are guided-output.ts's.
  'guided_json',
  'guided_whitespace_pattern',
  'guided_decoding_backend',
  'prompt_logprobs',
  'use_beam_search',
] as const;

const UNSUPPORTED_MESSAGE_KEYS = ['function_call', 'audio', 'refusal'] as const;

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function unsupported(param: string, what: string = `'${param}'`): ApiError {
  return new ApiError('unsupported_parameter', `${what} is not supported by capserve.`, { param });
}

function checkMessages(messages: unknown): void {
  if (!Array.isArray(messages)) return;
  messages.forEach((message: unknown, i) => {
    if (!isObject(message)) return;
    if (message['role'] === 'function') {
      throw unsupported(`messages[${i}].role`, `Role '${message['role']}' (tool calling)`);
    }
    for (const key of UNSUPPORTED_MESSAGE_KEYS) {
      // refusal: null is what some clients echo back on assistant turns; it says nothing.
      if (key in message && !(key === 'refusal' && message[key] === null)) throw unsupported(`messages[${i}].${key}`);
    }
    const content = message['content'];
    if (Array.isArray(content)) {
      content.forEach((part: unknown, j) => {
        if (isObject(part) && typeof part['type'] === 'string' && part['type'] !== 'text') {
          throw unsupported(`messages[${i}].content[${j}].type`, `Content part type '${part['type']}'`);
        }
      });
    }
  });
}

/** Tool calling is implemented on chat completions only. */
const TOOL_PARAMS = ['tools', 'tool_choice', 'parallel_tool_calls'] as const;

/**
 * Throws a 400 naming the first unsupported parameter found in a chat or
 * completions body, or a websocket response.create event ('response').
 */
export function rejectUnsupported(body: Record<string, unknown>, kind: 'chat' | 'completion' | 'response'): void {
  for (const key of UNSUPPORTED_TOP_LEVEL) {
    if (key in body && body[key] !== null) throw unsupported(key);
  }
  const so = body['structured_outputs'];
  if (isObject(so)) {
    for (const key of ['json', 'json_object', 'structural_tag', 'whitespace_pattern']) {
      if (key in so && so[key] !== null) throw unsupported(`structured_outputs.${key}`, `'structured_outputs.${key}' (use response_format for JSON)`);
    }
  }
  if (kind !== 'chat') for (const key of TOOL_PARAMS) if (key in body && body[key] !== null) throw unsupported(key);
  if (kind !== 'completion') {
    checkMessages(body['messages']);
    return;
  }
  if (typeof body['suffix'] === 'string' && body['suffix'] !== '') throw unsupported('suffix');
  const bestOf = body['best_of'];
  if (typeof bestOf === 'number' && bestOf !== (typeof body['n'] === 'number' ? body['n'] : 1)) {
    throw unsupported('best_of', 'best_of different from n');
  }
}
