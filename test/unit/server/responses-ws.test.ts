import t from 'tap';
import assert from 'node:assert/strict';
import { makeApp, plainCap } from './helpers.js';
import { EventLog } from './ws-client.js';

const CREATE = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ type: 'response.create', model: 'scripted', messages: [{ role: 'user', content: 'hi' }], ...extra });

t.test('websocket: created, deltas, text done, completed with status and usage', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'Hey' });
  await app.ready();
  const ws = await app.injectWS('/v1/responses');
  t.after(() => ws.terminate());
  const log = new EventLog(ws);
  ws.send(CREATE({ max_output_tokens: 3, temperature: 0 }));
  const completed = await log.next('response.completed');
  assert.deepEqual(log.types(), [
    'response.created',
    'response.output_item.added',
    'response.content_part.added',
    'response.output_text.delta',
    'response.output_text.delta',
    'response.output_text.delta',
    'response.output_text.done',
    'response.content_part.done',
    'response.output_item.done',
    'response.completed',
  ]);
  assert.deepEqual(
    log.events.map((e) => e['sequence_number']),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  const created = log.events[0]?.['response'] as Record<string, unknown>;
  assert.match(String(created['id']), /^resp_/);
  assert.equal(created['status'], 'in_progress');
  assert.equal(created['object'], 'response');
  assert.deepEqual(
    log.events.slice(3, 6).map((e) => e['delta']),
    ['H', 'e', 'y'],
  );
  assert.equal(log.events[6]?.['text'], 'Hey');
  const response = completed['response'] as Record<string, unknown>;
  assert.equal(response['id'], created['id']);
  assert.equal(response['status'], 'incomplete');
  assert.deepEqual(response['incomplete_details'], { reason: 'max_output_tokens' });
  const prompt = engine.requests[0]?.promptTokens.length ?? 0;
  assert.deepEqual(response['usage'], {
    input_tokens: prompt,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 3,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: prompt + 3,
  });
  assert.deepEqual(response['cap'], {
    policy: 'full',
    kind: 'none',
    prompt_tokens: prompt,
    kv_tokens_retained: prompt + 3,
    context_tokens: prompt + 3,
    compression_ratio: 1,
    attention_mass_retained: null,
    ...plainCap(prompt, 3),
  });
  assert.deepEqual(created['cap'], {
    policy: 'full',
    kind: 'none',
    prompt_tokens: prompt,
    kv_tokens_retained: null,
    context_tokens: null,
    compression_ratio: null,
    attention_mass_retained: null,
    ...plainCap(prompt, 3),
  });
  const output = response['output'] as { content: { type: string; text: string }[] }[];
  assert.deepEqual(output[0]?.content, [{ type: 'output_text', text: 'Hey', annotations: [] }]);
  assert.equal(engine.requests[0]?.sampling.temperature, 0);
  assert.equal(engine.requests[0]?.sampling.maxTokens, 3);
  ws.terminate();
});

t.test('websocket: many responses in turn on one connection; stop gives status completed', async (t) => {
  const { app } = makeApp(t, { reply: 'abcd' });
  await app.ready();
  const ws = await app.injectWS('/v1/responses');
  t.after(() => ws.terminate());
  const log = new EventLog(ws);
  ws.send(CREATE({ max_tokens: 2 }));
  await log.next('response.completed');
  const from = log.events.length;
  ws.send(CREATE({ stop: 'c', max_tokens: 10 }));
  const second = await log.next('response.completed', from);
  const response = second['response'] as Record<string, unknown>;
  assert.equal(response['status'], 'completed');
  assert.equal(response['incomplete_details'], null);
  assert.equal(log.events.find((e, i) => i >= from && e['type'] === 'response.output_text.done')?.['text'], 'ab');
  ws.terminate();
});

t.test('websocket: response.cancel stops the running response with status cancelled', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'abcdefgh', tokenDelayMs: 20 });
  await app.ready();
  const ws = await app.injectWS('/v1/responses');
  t.after(() => ws.terminate());
  const log = new EventLog(ws);
  ws.send(CREATE({ max_tokens: 200 }));
  await log.next('response.output_text.delta');
  ws.send(JSON.stringify({ type: 'response.cancel' }));
  const completed = await log.next('response.completed');
  const response = completed['response'] as { status: string; usage: { output_tokens: number } };
  assert.equal(response.status, 'cancelled');
  assert.ok(response.usage.output_tokens < 200);
  assert.ok(log.types().includes('response.output_text.done'));
  assert.equal(engine.running, 0);
  // The connection still serves the next response.
  const from = log.events.length;
  ws.send(CREATE({ max_tokens: 1 }));
  assert.equal(((await log.next('response.completed', from))['response'] as { status: string }).status, 'incomplete');
  ws.terminate();
});

t.test('websocket: bad frames get an error event and the socket stays open', async (t) => {
  const { app } = makeApp(t, { reply: 'ab', tokenDelayMs: 30 });
  await app.ready();
  const ws = await app.injectWS('/v1/responses');
  t.after(() => ws.terminate());
  const log = new EventLog(ws);
  const expectError = async (frame: string, code: string, param?: string): Promise<void> => {
    const from = log.events.length;
    ws.send(frame);
    const event = await log.next('error', from);
    const error = event['error'] as Record<string, unknown>;
    assert.equal(error['code'], code, frame);
    if (param !== undefined) assert.equal(error['param'], param, frame);
    assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type']);
  };
  await expectError('{not json', 'invalid_json');
  await expectError('[1,2]', 'unknown_event', 'type');
  await expectError(JSON.stringify({ type: 'session.update' }), 'unknown_event', 'type');
  await expectError(JSON.stringify({ type: 'response.cancel' }), 'invalid_request');
  await expectError(CREATE({ temperature: 9 }), 'invalid_request', 'temperature');
  await expectError(CREATE({ tools: [] }), 'unsupported_parameter', 'tools');
  await expectError(CREATE({ model: 'nope' }), 'model_not_found', 'model');
  await expectError(CREATE({ n: 2 }), 'unknown_parameter', 'n');
  ws.send(CREATE({ max_tokens: 2 }));
  await expectError(CREATE({ max_tokens: 2 }), 'response_in_progress');
  await log.next('response.completed');
  assert.equal(ws.readyState, ws.OPEN);
  ws.terminate();
});

t.test('websocket: closing the socket aborts the running generation', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'abcdefgh', tokenDelayMs: 20 });
  await app.ready();
  const ws = await app.injectWS('/v1/responses');
  const log = new EventLog(ws);
  ws.send(CREATE({ max_tokens: 200 }));
  await log.next('response.output_text.delta');
  assert.equal(engine.running, 1);
  ws.terminate();
  const deadline = Date.now() + 2000;
  while (engine.running > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.equal(engine.running, 0);
  assert.equal(engine.kvBytesUsed, 0);
  assert.equal(app.capserve.inflight.size, 0);
});

t.test('websocket: response.create takes text.format, response_format and pattern constraints; bad ones are error events', async (t) => {
  const { app, engine } = makeApp(t, { reply: '{}' });
  await app.ready();
  const ws = await app.injectWS('/v1/responses');
  t.after(() => ws.terminate());
  const log = new EventLog(ws);
  const formats: [Record<string, unknown>, string][] = [
    [{ text: { format: { type: 'json_schema', name: 'obj', schema: { type: 'object' } } } }, 'json_schema'],
    [{ response_format: { type: 'json_object' } }, 'json_object'],
    [{ structured_outputs: { grammar: 'root ::= "{}"' } }, 'grammar'],
  ];
  for (const [extra, type] of formats) {
    const from = log.events.length;
    ws.send(CREATE({ ...extra, max_output_tokens: 4 }));
    const done = await log.next('response.completed', from);
    assert.equal((done['response'] as { cap: { constraint: { type: string } } }).cap.constraint.type, type, JSON.stringify(extra));
    assert.ok(engine.requests[engine.requests.length - 1]?.grammar !== undefined, 'the grammar reaches the engine');
  }
  const errors: [Record<string, unknown>, string][] = [
    [{ text: { format: { type: 'json_schema', name: 'x', schema: { type: 'string', format: 'date' } } } }, 'text.format.schema.format'],
    [{ text: { format: { type: 'json_object' } }, response_format: { type: 'json_object' } }, 'text.format'],
    [{ guided_regex: '(a' }, 'guided_regex'],
  ];
  for (const [extra, param] of errors) {
    const from = log.events.length;
    ws.send(CREATE(extra));
    const error = (await log.next('error', from))['error'] as { param: string; code: string };
    assert.equal(error.param, param, JSON.stringify(extra));
    assert.equal(error.code, 'invalid_request');
  }
  assert.equal(ws.readyState, ws.OPEN);
});
