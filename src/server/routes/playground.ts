/**
 * The browser playground: GET / is its page, GET /playground/<file> its
 * scripts and styles, all read once at start from the build's output
 * (dist/playground, made by `npm run build` from src/playground). Nothing is
 * fetched from the network: the page talks only to this server's API
 * (/v1/policies, the /v1/responses websocket, /metrics, /health).
 *
 * On when server.playground says so; absent, on only without API keys. With
 * keys and the playground on, its page and assets are public (they hold no
 * data; the page sends the key the user types with every API call).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config/schema.js';
import { ApiError } from '../errors.js';

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Same-origin only: no inline script, no third-party anything. `'self'` covers the same host's ws:// in connect-src. */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** Where the build puts the playground: dist/playground, beside dist/src (this file is dist/src/server/routes/playground.js). */
export const PLAYGROUND_DIR = fileURLToPath(new URL('../../../playground/', import.meta.url));

interface Asset {
  readonly body: Buffer;
  readonly type: string;
}

export function playgroundEnabled(server: Config['server']): boolean {
  return server.playground ?? server.apiKeys.length === 0;
}

/** The built files by URL path ('/' is index.html); empty when the build has not produced them. */
export function loadPlaygroundAssets(dir: string = PLAYGROUND_DIR): ReadonlyMap<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(dir)) return assets;
  for (const name of readdirSync(dir).sort()) {
    const type = CONTENT_TYPES[path.extname(name)];
    const file = path.join(dir, name);
    if (type === undefined || !statSync(file).isFile()) continue;
    const body = readFileSync(file);
    assets.set(name === 'index.html' ? '/' : `/playground/${name}`, { body, type });
  }
  return assets;
}

/** The URL paths the playground serves: public when keys are set and the playground is on. */
export function playgroundPaths(assets: ReadonlyMap<string, Asset>): string[] {
  return [...assets.keys()];
}

export function registerPlayground(app: FastifyInstance, assets: ReadonlyMap<string, Asset>): void {
  const send = (urlPath: string): { asset: Asset } => {
    const asset = assets.get(urlPath);
    if (asset === undefined) {
      const hint = assets.size === 0 ? ' The playground is not built: run `npm run build`.' : '';
      throw new ApiError('not_found', `No route for GET ${urlPath}.${hint}`);
    }
    return { asset };
  };
  const headers = { 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'cache-control': 'no-cache', 'referrer-policy': 'no-referrer' };
  app.get('/', async (_request, reply) => {
    const { asset } = send('/');
    return reply.headers(headers).type(asset.type).send(asset.body);
  });
  app.get<{ Params: { file: string } }>('/playground/:file', async (request, reply) => {
    const { asset } = send(`/playground/${request.params.file}`);
    return reply.headers(headers).type(asset.type).send(asset.body);
  });
}
