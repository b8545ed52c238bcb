/**
 * POST /v1/responses over HTTP (issue 11) through the official openai SDK against
 * the real server on stories260K: JSON and SSE (named events from the builder the
 * websocket shares), instructions, previous_response_id.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { storiesSkip, useStoriesServer } from './stories-server.js';
import OpenAI from 'openai';

const skip = storiesSkip;
const MODEL = 'stories260K';
const fx = useStoriesServer({ timeoutMs: 20000 });

t.test('responses.create: the response object, same text as chat completions for the same messages', { skip }, async () => {
  const res = await fx().client.responses.create({ model: MODEL, input: 'Once upon a time,', max_output_tokens: 8, temperature: 0 });
  assert.match(res.id, /^resp_/);
  assert.equal(res.object, 'response');
  assert.equal(res.status, 'incomplete');
  assert.equal(res.usage?.output_tokens, 8);
  const chat = await fx().client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Once upon a time,' }],
    max_tokens: 8,
    temperature: 0,
  });
  assert.equal(res.output_text, chat.choices[0]?.message.content);
  assert.equal(res.usage?.input_tokens, chat.usage?.prompt_tokens);
  const items = await fx().client.responses.create({
    model: MODEL,
    input: [{ role: 'user', content: [{ type: 'input_text', text: 'Once upon a time,' }] }],
    max_output_tokens: 8,
    temperature: 0,
  });
  assert.equal(items.output_text, res.output_text);
});

t.test('stream: named SSE events in the Responses order; deltas join to the final text', { skip }, async () => {
  const stream = await fx().client.responses.create({ model: MODEL, input: 'Once upon a time,', max_output_tokens: 8, temperature: 0, stream: true });
  const types: string[] = [];
  let deltas = '';
  let final = '';
  for await (const e of stream) {
    types.push(e.type);
    if (e.type === 'response.output_text.delta') deltas += e.delta;
    if (e.type === 'response.completed') final = e.response.output_text;
  }
  assert.deepEqual(types.slice(0, 3), ['response.created', 'response.output_item.added', 'response.content_part.added']);
  assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
  assert.equal(deltas, final);
  const raw = await fetch(`${fx().server.baseUrl}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input: 'Hi', max_output_tokens: 2, stream: true }),
  });
  const body = await raw.text();
  assert.match(body, /^event: response\.created\ndata: \{/);
  assert.ok(!body.includes('[DONE]'));
});

t.test('instructions and previous_response_id: the conversation continues; an unknown id is a 404', { skip }, async () => {
  const first = await fx().client.responses.create({ model: MODEL, input: 'Once upon a time,', max_output_tokens: 4, temperature: 0 });
  const second = await fx().client.responses.create({ model: MODEL, input: 'And then?', previous_response_id: first.id, max_output_tokens: 4, temperature: 0 });
  const alone = await fx().client.responses.create({ model: MODEL, input: 'And then?', max_output_tokens: 4, temperature: 0 });
  assert.equal(second.previous_response_id, first.id);
  assert.ok((second.usage?.input_tokens ?? 0) > (alone.usage?.input_tokens ?? 0) + (first.usage?.output_tokens ?? 0) - 1);
  const instructed = await fx().client.responses.create({
    model: MODEL,
    input: 'And then?',
    instructions: 'Tell a story.',
    max_output_tokens: 4,
    temperature: 0,
  });
  assert.ok((instructed.usage?.input_tokens ?? 0) > (alone.usage?.input_tokens ?? 0));
  await assert.rejects(
    fx().client.responses.create({ model: MODEL, input: 'x', previous_response_id: 'resp_unknown', max_output_tokens: 2 }),
    (err: unknown) => err instanceof OpenAI.NotFoundError && (err as InstanceType<typeof OpenAI.APIError>).param === 'previous_response_id',
  );
});
