import t from 'tap';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startServer, storiesModelDir, waitFor, type RunningServer } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
let server: RunningServer;

t.before(async () => {
  if (modelDir !== null) server = await startServer(modelDir);
});
t.teardown(async () => {
  await server?.close();
});

function rawRequest(port: number, path: string, body: unknown): { socket: Socket; received: () => string; ended: Promise<void> } {
  const socket = connect(port, '127.0.0.1');
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (data += chunk));
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  const payload = JSON.stringify(body);
  socket.write(
    `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\nConnection: close\r\n\r\n${payload}`,
  );
  return { socket, received: () => data, ended };
}

function dechunk(body: string): string {
  let out = '';
  let rest = body;
  for (;;) {
    const eol = rest.indexOf('\r\n');
    assert.ok(eol > 0, 'chunk size line');
    const size = parseInt(rest.slice(0, eol), 16);
    if (size === 0) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    assert.equal(rest.slice(eol + 2 + size, eol + 4 + size), '\r\n');
    rest = rest.slice(eol + 4 + size);
  }
}

t.test('raw socket: SSE head and framing byte for byte', { skip }, async () => {
  const req = rawRequest(server.port, '/v1/chat/completions', {
    model: 'stories260K',
    messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 5,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  await req.ended;
  const raw = req.received();
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).split('\r\n');
  assert.equal(head[0], 'HTTP/1.1 200 OK');
  const headers = new Map(head.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  assert.equal(headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.equal(headers.get('cache-control'), 'no-cache');
  assert.equal(headers.get('transfer-encoding'), 'chunked');
  assert.equal(headers.get('x-capserve-policy'), 'full');
  assert.equal(headers.has('content-length'), false);
  assert.equal(headers.get('connection'), 'close', "the client's Connection: close is honoured");
  const body = dechunk(raw.slice(split + 4));
  assert.ok(body.endsWith('data: [DONE]\n\n'));
  const events = body.split('\n\n').slice(0, -1);
  for (const e of events) assert.match(e, /^data: [^\n]+$/);
  const json = events
    .slice(0, -1)
    .map((e) => JSON.parse(e.slice(6)) as { object: string; choices: { delta?: { role?: string }; finish_reason?: string | null }[]; usage?: unknown });
  assert.equal(json[0]?.choices[0]?.delta?.role, 'assistant');
  assert.ok(json.every((e) => e.object === 'chat.completion.chunk'));
  assert.equal(json.at(-2)?.choices[0]?.finish_reason, 'length');
  assert.deepEqual(json.at(-1)?.choices, []);
  assert.ok(json.at(-1)?.usage);
});

t.test('raw socket: errors before streaming keep their status and JSON body', { skip }, async () => {
  const req = rawRequest(server.port, '/v1/chat/completions', { model: 'stories260K', messages: [], stream: true });
  await req.ended;
  const raw = req.received();
  assert.match(raw, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(raw, /\r\ncontent-type: application\/json; charset=utf-8\r\n/i);
  const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { error: { param: string; code: string } };
  assert.equal(body.error.param, 'messages');
});

for (const stream of [true, false]) {
  t.test(`disconnect mid-generation (stream=${stream}): the sequence stops and KV bytes return to baseline`, { skip }, async () => {
    await waitFor(() => server.engine.health().running === 0, 3000, 'idle engine');
    const baseline = server.engine.health().kvBytesUsed;
    const req = rawRequest(server.port, '/v1/completions', {
      model: 'stories260K',
      prompt: 'Once upon a time',
      max_tokens: 480,
      temperature: 1,
      ignore_eos: true,
      stream,
    });
    await waitFor(() => server.engine.health().kvBytesUsed > baseline, 5000, 'KV in use');
    if (stream) await waitFor(() => req.received().includes('data: '), 5000, 'first SSE event');
    req.socket.destroy();
    await waitFor(() => server.engine.health().running === 0 && server.engine.health().kvBytesUsed === baseline, 3000, 'KV back to baseline');
    assert.ok(!req.received().includes('[DONE]'), 'the generation was cut short, not finished');
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    assert.match(metrics, new RegExp(`capserve_kv_cache_bytes\\{policy="full"\\} ${baseline}\\n`));
    assert.match(metrics, /capserve_request_success_total\{policy="full",finished_reason="abort"\} [1-9]/);
  });
}

t.test('a request whose logit_bias bans every token is a 400 naming logit_bias; the requests beside it are served', { skip }, async () => {
  const banAll = Object.fromEntries(Array.from({ length: 512 }, (_, i) => [String(i), -100]));
  const post = (body: Record<string, unknown>): Promise<Response> =>
    fetch(`${server.baseUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const [bad, ...good] = await Promise.all([
    post({ prompt: 'Once upon a time', max_tokens: 4, logit_bias: banAll }),
    ...Array.from({ length: 7 }, (_, i) => post({ prompt: `Once upon a time ${i}`, max_tokens: 4, temperature: 0 })),
  ]);
  assert.equal(bad?.status, 400);
  const err = ((await bad?.json()) as { error: { code: string; param: string | null } }).error;
  assert.deepEqual([err.code, err.param], ['invalid_request', 'logit_bias']);
  for (const res of good) assert.equal(res.status, 200, await res.text());
});
