/**
 * The Vercel AI SDK (`ai` + `@ai-sdk/openai`, from npm) against the real server on
 * stories260K: the default `openai(model)` provider (the Responses API over HTTP),
 * `.chat(model)` (chat completions), each generating and streaming, and
 * `.completion(model)`; texts agree with the chat completions route for the same messages.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';
import OpenAI from 'openai';
import { startServer, storiesModelDir, type RunningServer } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
const MODEL = 'stories260K';
let server: RunningServer;

t.before(async () => {
  if (modelDir === null) return;
  server = await startServer(modelDir);
});
t.teardown(async () => {
  await server?.close();
});

const provider = (): ReturnType<typeof createOpenAI> => createOpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused' });

async function reference(maxTokens: number): Promise<string> {
  const client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  const chat = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Once upon a time,' }],
    max_tokens: maxTokens,
    temperature: 0,
  });
  return chat.choices[0]?.message.content ?? '';
}

t.test('AI SDK default provider openai(model): generateText and streamText through /v1/responses', { skip }, async () => {
  const expected = await reference(8);
  const r = await generateText({ model: provider()(MODEL), prompt: 'Once upon a time,', maxOutputTokens: 8, temperature: 0 });
  assert.equal(r.text, expected);
  assert.equal(r.usage.outputTokens, 8);
  const s = streamText({ model: provider()(MODEL), prompt: 'Once upon a time,', maxOutputTokens: 8, temperature: 0 });
  let streamed = '';
  for await (const delta of s.textStream) streamed += delta;
  assert.equal(streamed, expected);
});

t.test('AI SDK .chat(model): generateText and streamText through /v1/chat/completions', { skip }, async () => {
  const expected = await reference(8);
  const r = await generateText({ model: provider().chat(MODEL), prompt: 'Once upon a time,', maxOutputTokens: 8, temperature: 0 });
  assert.equal(r.text, expected);
  const s = streamText({ model: provider().chat(MODEL), prompt: 'Once upon a time,', maxOutputTokens: 8, temperature: 0 });
  let streamed = '';
  for await (const delta of s.textStream) streamed += delta;
  assert.equal(streamed, expected);
  assert.equal((await s.usage).outputTokens, 8);
});

t.test('AI SDK .completion(model): the legacy completions route, usage and finish reason', { skip }, async () => {
  const r = await generateText({ model: provider().completion(MODEL), prompt: 'Once upon a time,', maxOutputTokens: 8, temperature: 0 });
  assert.ok(r.text.length > 0);
  assert.equal(r.usage.outputTokens, 8);
  assert.equal(r.finishReason, 'length');
});
