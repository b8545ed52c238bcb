import t from 'tap';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { EventLog } from '../unit/server/ws-client.js';
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

async function open(t: { after: (fn: () => void) => void }): Promise<{ ws: WebSocket; log: EventLog }> {
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/v1/responses`);
  const log = new EventLog(ws);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  t.after(() => ws.terminate());
  return { ws, log };
}

const create = (extra: Record<string, unknown>): string =>
  JSON.stringify({ type: 'response.create', model: 'stories260K', messages: [{ role: 'user', content: 'Tell me a story' }], ...extra });

t.test('websocket: event sequence, deltas add up to the text, usage, then the next response on the same socket', { skip }, async (t) => {
  const { ws, log } = await open(t);
  ws.send(create({ max_output_tokens: 12, temperature: 0 }));
  const completed = await log.next('response.completed');
  const types = log.types();
  assert.equal(types[0], 'response.created');
  assert.deepEqual(types.slice(1, 3), ['response.output_item.added', 'response.content_part.added']);
  assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
  assert.ok(types.slice(3, -4).every((ty) => ty === 'response.output_text.delta'));
  const deltas = log.events
    .filter((e) => e['type'] === 'response.output_text.delta')
    .map((e) => String(e['delta']))
    .join('');
  const done = log.events.find((e) => e['type'] === 'response.output_text.done');
  assert.equal(done?.['text'], deltas);
  const response = completed['response'] as { status: string; usage: { output_tokens: number; input_tokens: number; total_tokens: number } };
  assert.equal(response.status, 'incomplete');
  assert.equal(response.usage.output_tokens, 12);
  assert.equal(response.usage.total_tokens, response.usage.input_tokens + 12);

  // Same request over chat completions gives the same text (greedy).
  const http = (await (
    await fetch(`${server.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'Tell me a story' }], max_tokens: 12, temperature: 0 }),
    })
  ).json()) as { choices: { message: { content: string } }[] };
  assert.equal(http.choices[0]?.message.content, deltas);

  const from = log.events.length;
  ws.send(create({ max_output_tokens: 3 }));
  const second = await log.next('response.completed', from);
  assert.equal((second['response'] as { usage: { output_tokens: number } }).usage.output_tokens, 3);
});

t.test('websocket: response.cancel ends with status cancelled and frees the KV memory', { skip }, async (t) => {
  const baseline = server.engine.health().kvBytesUsed;
  const { ws, log } = await open(t);
  ws.send(create({ max_tokens: 400, ignore_eos: true, temperature: 1 }));
  await log.next('response.output_text.delta');
  ws.send(JSON.stringify({ type: 'response.cancel' }));
  const completed = await log.next('response.completed');
  const response = completed['response'] as { status: string; usage: { output_tokens: number } };
  assert.equal(response.status, 'cancelled');
  assert.ok(response.usage.output_tokens < 400);
  await waitFor(() => server.engine.health().kvBytesUsed === baseline && server.engine.health().running === 0, 3000, 'KV back to baseline');
});

t.test('websocket: malformed frames get error events; the socket stays usable', { skip }, async (t) => {
  const { ws, log } = await open(t);
  ws.send('this is not json');
  const e1 = await log.next('error');
  assert.equal((e1['error'] as { code: string }).code, 'invalid_json');
  ws.send(JSON.stringify({ type: 'response.create', messages: 'nope' }));
  await waitFor(() => log.events.filter((e) => e['type'] === 'error').length === 2, 3000, 'second error');
  const e2 = log.events.filter((e) => e['type'] === 'error')[1];
  assert.equal((e2?.['error'] as { param: string }).param, 'messages');
  ws.send(create({ max_tokens: 2 }));
  const ok = await log.next('response.completed');
  assert.equal((ok['response'] as { usage: { output_tokens: number } }).usage.output_tokens, 2);
});

t.test('websocket: closing the socket mid-response aborts it and releases the KV bytes', { skip }, async (t) => {
  const baseline = server.engine.health().kvBytesUsed;
  const { ws, log } = await open(t);
  ws.send(create({ max_tokens: 400, ignore_eos: true, temperature: 1 }));
  await log.next('response.output_text.delta');
  assert.ok(server.engine.health().kvBytesUsed > baseline);
  ws.close();
  await waitFor(() => server.engine.health().kvBytesUsed === baseline && server.engine.health().running === 0, 3000, 'KV back to baseline');
  assert.equal(server.app.capserve.inflight.size, 0);
});
