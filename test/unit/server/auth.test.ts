/** server.publicPaths decides which paths answer without a key; the start-up warning fires only for a reachable, keyless server. */
import t from 'tap';
import assert from 'node:assert/strict';
import { loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { exposureWarning, isLoopbackHost } from '../../../src/server/auth.js';
import { makeApp } from './helpers.js';

const KEY = 'server.apiKeys=[k-one]';
const bearer = { authorization: 'Bearer k-one' };

t.test('publicPaths default: /health and /metrics open with keys set, the query string ignored', async (t) => {
  const { app } = makeApp(t, {}, [KEY]);
  assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/health?x=1' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/v1/models' })).statusCode, 401);
});

t.test('publicPaths []: /health and /metrics need a key too', async (t) => {
  const { app } = makeApp(t, {}, [KEY, 'server.publicPaths=[]']);
  for (const url of ['/health', '/metrics']) {
    const res = await app.inject({ method: 'GET', url });
    assert.equal(res.statusCode, 401, url);
    assert.equal(res.json().error.code, 'invalid_api_key');
    assert.equal(res.json().error.type, 'authentication_error');
    assert.equal((await app.inject({ method: 'GET', url, headers: bearer })).statusCode, 200, url);
  }
});

t.test('publicPaths lists exact paths: /v1/models open, /health closed, a prefix does not match', async (t) => {
  const { app } = makeApp(t, {}, [KEY, 'server.publicPaths=[/v1/models]']);
  assert.equal((await app.inject({ method: 'GET', url: '/v1/models' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/v1/models/scripted' })).statusCode, 401);
  assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 401);
});

t.test('publicPaths without keys: everything open', async (t) => {
  const { app } = makeApp(t, {}, ['server.publicPaths=[]']);
  assert.equal((await app.inject({ method: 'GET', url: '/v1/models' })).statusCode, 200);
});

t.test('publicPaths must be paths: a query string or a relative path is a config error', async () => {
  assert.throws(() => loadConfig({ overrides: [parseOverride('server.publicPaths=[health]')] }), /publicPaths/);
  assert.throws(() => loadConfig({ overrides: [parseOverride('server.publicPaths=["/health?x=1"]')] }), /publicPaths/);
  assert.deepEqual(loadConfig({}).server.publicPaths, ['/health', '/metrics']);
});

t.test('exposureWarning: beyond loopback with no keys warns; loopback or keys do not', async () => {
  for (const host of ['127.0.0.1', '::1', '[::1]', 'localhost', 'LOCALHOST', '127.0.0.2']) {
    assert.equal(isLoopbackHost(host), true, host);
    assert.equal(exposureWarning({ host, port: 8000, apiKeys: [] }), null, host);
  }
  for (const host of ['0.0.0.0', '::', '192.168.1.5', 'example.com']) {
    assert.equal(isLoopbackHost(host), false, host);
    const warning = exposureWarning({ host, port: 8000, apiKeys: [] });
    assert.ok(warning !== null, host);
    assert.match(warning, new RegExp(`^listening on ${host.replace(/\./g, '\\.')}:8000 with no API keys`));
    assert.match(warning, /server\.apiKeys/);
    assert.equal(exposureWarning({ host, port: 8000, apiKeys: ['k'] }), null, host);
  }
  // The shipped defaults are quiet: 127.0.0.1, no keys.
  assert.equal(exposureWarning(loadConfig({}).server), null);
});
