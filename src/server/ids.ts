import { randomUUID } from 'node:crypto';

/** OpenAI-style ids: `chatcmpl-…`, `cmpl-…`, `resp_…`. */
export function newId(prefix: 'chatcmpl-' | 'cmpl-' | 'resp_' | 'msg_'): string {
  return prefix + randomUUID().replaceAll('-', '');
}

/** Unix seconds, as OpenAI's `created`. */
export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}
