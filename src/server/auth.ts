import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { ApiError } from './errors.js';

/**
 * Builds the Bearer-key check; with no keys configured every request passes.
 * With keys, only `publicPaths` (server.publicPaths: exact paths, the query
 * string ignored) are answered without one. Keys are compared in constant time
 * so response timing leaks nothing.
 *
 * Browsers cannot set headers on a websocket, so a websocket upgrade without an
 * Authorization header may carry the key as a subprotocol,
 * `capserve.bearer.<key as base64url>` (listed after a plain `capserve`, which
 * the server selects), as Kubernetes does for its API tokens.
 */
export function createAuthCheck(apiKeys: readonly string[], publicPaths: readonly string[]): (request: FastifyRequest) => void {
  const keys = apiKeys.map((k) => Buffer.from(k, 'utf8'));
  const open = new Set(publicPaths);
  return (request) => {
    if (keys.length === 0) return;
    const path = request.url.split('?', 1)[0] ?? '';
    if (open.has(path)) return;
    const header = request.headers.authorization ?? subprotocolBearer(request.headers['sec-websocket-protocol']);
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

const SUBPROTOCOL_PREFIX = 'capserve.bearer.';

/** `Bearer <key>` from a `capserve.bearer.<base64url>` websocket subprotocol, or undefined. */
function subprotocolBearer(header: string | undefined): string | undefined {
  const entry = header
    ?.split(',')
    .map((p) => p.trim())
    .find((p) => p.startsWith(SUBPROTOCOL_PREFIX));
  if (entry === undefined) return undefined;
  return `Bearer ${Buffer.from(entry.slice(SUBPROTOCOL_PREFIX.length), 'base64url').toString('utf8')}`;
}

/** True for hosts only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The start-up warning for a server anyone on the network can use: bound beyond
 * loopback with no API keys. null when there is nothing to warn about.
 */
export function exposureWarning(server: { readonly host: string; readonly port: number; readonly apiKeys: readonly string[] }): string | null {
  if (server.apiKeys.length > 0 || isLoopbackHost(server.host)) return null;
  return (
    `listening on ${server.host}:${server.port} with no API keys: anyone who can reach this address can run inference. ` +
    'Set server.apiKeys, or bind to 127.0.0.1 (in a container: publish the port on 127.0.0.1 only).'
  );
}
