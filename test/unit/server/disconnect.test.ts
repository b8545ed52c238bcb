import t from 'tap';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CHAT, makeApp } from './helpers.js';

async function waitFor(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

for (const stream of [true, false]) {
  t.test(`a client that disconnects aborts its generation (stream=${stream})`, async (t) => {
    const { app, engine } = makeApp(t, { reply: 'abcdefgh', tokenDelayMs: 10 });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' } });
    req.on('error', () => undefined);
    req.end(JSON.stringify(CHAT({ stream, max_tokens: 200 })));
    await waitFor(() => engine.running === 1);
    await new Promise((r) => setTimeout(r, 30));
    req.destroy();
    await waitFor(() => engine.running === 0);
    assert.equal(engine.kvBytesUsed, 0);
    assert.deepEqual(engine.aborted, [engine.requests[0]?.id]);
    await waitFor(() => app.capserve.inflight.size === 0);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /capserve_request_success_total\{policy="full",finished_reason="abort"\} 1/);
  });
}

t.test('shutdown drain: abortAll ends running generations and tells streaming clients', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'abcdefgh', tokenDelayMs: 10 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  let streaming = false;
  const body = new Promise<string>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        streaming = true;
      });
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end(JSON.stringify(CHAT({ stream: true, max_tokens: 200 })));
  });
  await waitFor(() => streaming);
  assert.equal(engine.running, 1);
  app.capserve.beginShutdown();
  app.capserve.inflight.abortAll('shutdown');
  await app.capserve.inflight.idle();
  const text = await body;
  assert.match(
    text,
    /data: \{"error":\{"message":"The server is shutting down\.","type":"service_unavailable","param":null,"code":"shutting_down"\}\}\n\ndata: \[DONE\]\n\n$/,
  );
});

t.test('server.requestTimeoutMs: a generation past the deadline is aborted and answered 504', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'abcdefgh', tokenDelayMs: 20 }, ['server.requestTimeoutMs=60']);
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ max_tokens: 200 }) });
  assert.equal(res.statusCode, 504);
  assert.equal(res.json().error.code, 'request_timeout');
  assert.equal(engine.running, 0);
  assert.equal(engine.aborted.length, 1);
  const streamed = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ max_tokens: 200, stream: true }) });
  assert.equal(streamed.statusCode, 200);
  assert.match(streamed.body, /data: \{"error":\{[^\n]*"code":"request_timeout"\}\}\n\ndata: \[DONE\]\n\n$/);
});
