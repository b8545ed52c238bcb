import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

/** Routes left open so probes and Prometheus need no key. */
const OPEN_PATHS = new Set(['/health', '/metrics']);

/**
 * Builds the Bearer-key check; with no keys configured every request passes.
 * Keys are compared in constant time so response timing leaks nothing.
 */
export function createAuthCheck(apiKeys: readonly string[]): (request: FastifyRequest) => void {
  const keys = apiKeys.map((k) => Buffer.from(k, 'utf8'));
  return (request) => {
    if (keys.length === 0) return;
    const path = request.url.split('?', 1)[0] ?? '';
    if (OPEN_PATHS.has(path)) return;
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match === null) {
      throw new ApiError('invalid_api_key', 'Missing API key: send the header Authorization: Bearer <key>.');
    }
    const given = Buffer.from(match[1] as string, 'utf8');
    let ok = false;
    for (const key of keys) {
      // timingSafeEqual needs equal lengths; the length check itself reveals only the length.
      if (key.length === given.length && timingSafeEqual(key, given)) ok = true;
    }
    if (!ok) throw new ApiError('invalid_api_key', 'Incorrect API key provided.');
  };
}
