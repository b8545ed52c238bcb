/**
 * The playground route: GET / serves the built page (dist/playground, made by
 * `npm run build`) with a same-origin CSP, every script it loads is served, and
 * server.playground decides whether it is on (absent: only without API keys).
 * With keys, a browser websocket carries the key as a subprotocol.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { WebSocket } from 'ws';
import { loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { playgroundEnabled } from '../../../src/server/routes/playground.js';
import { makeApp } from './helpers.js';
import { EventLog } from './ws-client.js';

t.test('GET / serves the page; its module scripts and styles are served, same-origin only', async (t) => {
  const { app } = makeApp(t);
  const page = await app.inject({ method: 'GET', url: '/' });
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  const refs = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '');
  assert.deepEqual(
    refs.filter((r) => !r.startsWith('/playground/')),
    [],
    'no external or relative resources',
  );
  assert.ok(refs.includes('/playground/app.js'));
  const scripts = new Set(refs);
  // Follow the module graph: every import a script makes must be served too.
  for (const ref of scripts) {
    const res = await app.inject({ method: 'GET', url: ref });
    assert.equal(res.statusCode, 200, ref);
    if (ref.endsWith('.js')) {
      assert.match(String(res.headers['content-type']), /^text\/javascript/);
      for (const m of res.body.matchAll(/from '\.\/([^']+)'/g)) scripts.add(`/playground/${m[1] ?? ''}`);
    }
  }
  assert.ok(scripts.size >= 6, `the module graph has the panels: ${[...scripts].join(', ')}`);
  const missing = await app.inject({ method: 'GET', url: '/playground/nope.js' });
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.json().error.code, 'not_found');
});

t.test('server.playground: absent is on without keys and off with keys; true serves it without a key', async (t) => {
  const server = (sets: string[]) => loadConfig({ overrides: sets.map(parseOverride) }).server;
  assert.equal(playgroundEnabled(server([])), true);
  assert.equal(playgroundEnabled(server(['server.apiKeys=[k]'])), false);
  assert.equal(playgroundEnabled(server(['server.apiKeys=[k]', 'server.playground=true'])), true);
  assert.equal(playgroundEnabled(server(['server.playground=false'])), false);

  const { app: closed } = makeApp(t, {}, ['server.apiKeys=[k]']);
  assert.equal((await closed.inject({ method: 'GET', url: '/', headers: { authorization: 'Bearer k' } })).statusCode, 404);

  const { app: open } = makeApp(t, {}, ['server.apiKeys=[k]', 'server.playground=true']);
  assert.equal((await open.inject({ method: 'GET', url: '/' })).statusCode, 200);
  assert.equal((await open.inject({ method: 'GET', url: '/playground/app.js' })).statusCode, 200);
  assert.equal((await open.inject({ method: 'GET', url: '/v1/policies' })).statusCode, 401, 'the API still needs the key');
  assert.equal((await open.inject({ method: 'GET', url: '/playground/nope.js' })).statusCode, 401, 'only the built files are public');

  const { app: off } = makeApp(t, {}, ['server.playground=false']);
  assert.equal((await off.inject({ method: 'GET', url: '/' })).statusCode, 404);
});

t.test('websocket with keys: the key as a capserve.bearer.<base64url> subprotocol is accepted, a wrong one is refused', async (t) => {
  const { app } = makeApp(t, { reply: 'ok' }, ['server.apiKeys=[s3cret/key+]']);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/responses`;
  const open = (protocols: string[]): Promise<WebSocket> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols);
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
      ws.once('error', reject);
    });
  const ws = await open(['capserve', `capserve.bearer.${Buffer.from('s3cret/key+').toString('base64url')}`]);
  t.after(() => ws.terminate());
  assert.equal(ws.protocol, 'capserve', 'the server selects the plain protocol, never echoes the key');
  const log = new EventLog(ws);
  ws.send(JSON.stringify({ type: 'response.create', model: 'scripted', messages: [{ role: 'user', content: 'hi' }], max_output_tokens: 2 }));
  assert.equal(((await log.next('response.completed'))['response'] as { output_text: string }).output_text, 'ok');
  await assert.rejects(open(['capserve', `capserve.bearer.${Buffer.from('wrong').toString('base64url')}`]), /status 401/);
  await assert.rejects(open(['capserve']), /status 401/);
});
