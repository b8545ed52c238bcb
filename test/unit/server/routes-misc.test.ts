import t from 'tap';
import assert from 'node:assert/strict';
import { CHAT, makeApp } from './helpers.js';

t.test('GET /v1/models and /v1/models/:id', async (t) => {
  const { app } = makeApp(t, { contextLength: 128 });
  const res = await app.inject({ method: 'GET', url: '/v1/models' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), {
    object: 'list',
    data: [{ id: 'scripted', object: 'model', created: 1700000000, owned_by: 'capserve', root: 'scripted', parent: null, max_model_len: 128 }],
  });
  const one = await app.inject({ method: 'GET', url: '/v1/models/scripted' });
  assert.equal(one.json().id, 'scripted');
});

t.test('POST /tokenize (prompt and messages) and /detokenize, vLLM shapes', async (t) => {
  const { app } = makeApp(t, { contextLength: 99 });
  const prompt = await app.inject({ method: 'POST', url: '/tokenize', payload: { prompt: 'AB' } });
  assert.deepEqual(prompt.json(), { count: 3, max_model_len: 99, tokens: [1, 65, 66] });
  const noSpecial = await app.inject({ method: 'POST', url: '/tokenize', payload: { model: 'scripted', prompt: 'AB', add_special_tokens: false } });
  assert.deepEqual(noSpecial.json().tokens, [65, 66]);
  const chat = await app.inject({ method: 'POST', url: '/tokenize', payload: { messages: [{ role: 'user', content: 'A' }] } });
  assert.equal(chat.json().count, '<user>A<assistant>'.length + 1);
  const detok = await app.inject({ method: 'POST', url: '/detokenize', payload: { tokens: [1, 72, 105] } });
  assert.deepEqual(detok.json(), { prompt: 'Hi' });
  const bad = await app.inject({ method: 'POST', url: '/detokenize', payload: { tokens: ['a'] } });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.param, 'tokens[0]');
  const unknown = await app.inject({ method: 'POST', url: '/tokenize', payload: { prompt: 'x', model: 'other' } });
  assert.equal(unknown.statusCode, 404);
});

t.test('GET /health: 200 when ready', async (t) => {
  const { app } = makeApp(t);
  const res = await app.inject({ method: 'GET', url: '/health' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { status: 'ok', worker: 'ready', worker_restarts: 0 });
});

t.test('GET /metrics: Prometheus text with capserve_ metrics after a request', async (t) => {
  const { app } = makeApp(t);
  await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ max_tokens: 2 }) });
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.match(res.body, /capserve_time_to_first_token_seconds_count\{policy="full"\} 1/);
  assert.match(res.body, /capserve_inter_token_latency_seconds_count\{policy="full"\} 1/);
  assert.match(res.body, /capserve_generation_tokens_total\{policy="full"\} 2/);
  assert.match(res.body, /capserve_request_success_total\{policy="full",finished_reason="length"\} 1/);
  assert.match(res.body, /capserve_request_queue_time_seconds_count\{policy="full"\} 1/);
  assert.match(res.body, /capserve_kv_cache_bytes\{policy="full"\} 0/);
});

t.test('auth: Bearer keys when configured; /health and /metrics stay open', async (t) => {
  const { app } = makeApp(t, {}, ['server.apiKeys=[k-one, k-two]']);
  const missing = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT() });
  assert.equal(missing.statusCode, 401);
  assert.equal(missing.headers['www-authenticate'], 'Bearer');
  assert.deepEqual(Object.keys(missing.json().error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(missing.json().error.code, 'invalid_api_key');
  const wrong = await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer nope' } });
  assert.equal(wrong.statusCode, 401);
  assert.match(wrong.json().error.message, /Incorrect API key/);
  const basic = await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Basic k-one' } });
  assert.equal(basic.statusCode, 401);
  for (const key of ['k-one', 'k-two']) {
    const ok = await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: `Bearer ${key}` } });
    assert.equal(ok.statusCode, 200);
  }
  assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'POST', url: '/tokenize', payload: { prompt: 'x' } })).statusCode, 401);
  const ws = app.injectWS('/v1/responses');
  await assert.rejects(ws, /401/);
});

t.test('no keys configured: no auth', async (t) => {
  const { app } = makeApp(t);
  const res = await app.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer anything' } });
  assert.equal(res.statusCode, 200);
});

t.test('while shutting down: new requests get 503 shutting_down with Connection: close', async (t) => {
  const { app } = makeApp(t);
  await app.ready();
  app.capserve.beginShutdown();
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT() });
  assert.equal(res.statusCode, 503);
  assert.equal(res.json().error.code, 'shutting_down');
  assert.equal(res.headers['connection'], 'close');
  assert.equal(res.headers['retry-after'], '5');
  assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 503);
});
