/**
 * Structured outputs and tool calling with the official `openai` SDK and the AI
 * SDK against the embedded default model (generated as `capserve serve` does on
 * first start: llama, preset small, seed 0, its own byte-level BPE tokenizer and
 * ChatML template, which knows nothing of tools). Its weights are random, so
 * every valid output here is the grammar's doing. Needs no ../shared.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { z } from 'zod';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import type { ChatCompletion, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, jsonSchema, tool } from 'ai';
import { createModel } from '../../src/model/create/create-model.js';
import { startServer, type RunningServer } from './server-harness.js';

let server: RunningServer;
let client: OpenAI;
let dir: string;
const MODEL = 'default';

t.before(async () => {
  dir = join(mkdtempSync(join(tmpdir(), 'capserve-default-sdk-')), MODEL);
  await createModel({ arch: 'llama', preset: 'small', seed: 0, out: dir });
  server = await startServer(dir);
  client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
});
t.teardown(async () => {
  await server?.close();
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

const ajv = new Ajv({ strict: false });
const Character = z.object({
  name: z.string().max(20),
  kind: z.enum(['cat', 'dog', 'girl', 'boy']),
  age: z.number().int(),
  toys: z.array(z.string().max(10)).max(3),
});
const WEATHER: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const validateWeather = ajv.compile(WEATHER.function.parameters ?? {});

t.test('default model: openai SDK parse with zodResponseFormat, 20 seeded samples at temperature 1', async () => {
  for (let r = 0; r < 2; r++) {
    const completion = await client.chat.completions.parse({
      model: MODEL,
      messages: [{ role: 'user', content: 'A character:' }],
      response_format: zodResponseFormat(Character, 'character'),
      temperature: 1,
      seed: 40 + r,
      n: 10,
      max_tokens: 120,
    });
    for (const choice of completion.choices) {
      assert.ok(choice.message.parsed !== null, choice.message.content ?? '');
      assert.ok(Character.safeParse(choice.message.parsed).success, JSON.stringify(choice.message.parsed));
    }
  }
});

t.test('default model: a tool loop with tool_choice required, then auto and a regex', async () => {
  for (let seed = 0; seed < 5; seed++) {
    const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }];
    const first: ChatCompletion = await client.chat.completions.create({
      model: MODEL,
      messages,
      tools: [WEATHER],
      tool_choice: 'required',
      temperature: 1,
      seed,
      max_tokens: 80,
    });
    const choice = first.choices[0];
    assert.ok(choice);
    assert.equal(choice.finish_reason, 'tool_calls');
    const calls = choice.message.tool_calls ?? [];
    assert.ok(calls.length >= 1);
    for (const call of calls) {
      if (call.type !== 'function') continue;
      assert.ok(validateWeather(JSON.parse(call.function.arguments)), call.function.arguments);
    }
    messages.push(choice.message);
    for (const call of calls) messages.push({ role: 'tool', tool_call_id: call.id, content: '21C' });
    const second: ChatCompletion = await client.chat.completions.create({
      model: MODEL,
      messages,
      tools: [WEATHER],
      tool_choice: 'auto',
      temperature: 1,
      seed,
      max_tokens: 24,
    });
    const answer = second.choices[0]?.message;
    assert.ok(!(answer?.content ?? '').includes('<tool_call>'), 'an opened call is always parsed into tool_calls');
    for (const call of answer?.tool_calls ?? [])
      if (call.type === 'function') assert.ok(validateWeather(JSON.parse(call.function.arguments)), call.function.arguments);
  }
  const dated = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'When?' }],
    temperature: 1,
    seed: 3,
    n: 5,
    max_tokens: 20,
    ...{ guided_regex: '20\\d\\d-(0[1-9]|1[0-2])' },
  });
  for (const c of dated.choices) assert.match(c.message.content ?? '', /^20\d\d-(0[1-9]|1[0-2])$/);
});

t.test('default model: AI SDK generateObject and generateText with a required tool', async () => {
  const provider = createOpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused' });
  for (let seed = 0; seed < 3; seed++) {
    const { object } = await generateObject({
      model: provider.chat(MODEL),
      schema: Character,
      prompt: 'A character:',
      temperature: 1,
      seed,
      maxOutputTokens: 120,
    });
    assert.ok(Character.safeParse(object).success, JSON.stringify(object));
  }
  const r = await generateText({
    model: provider.chat(MODEL),
    prompt: 'Weather in Oslo?',
    tools: { get_weather: tool({ description: 'weather', inputSchema: jsonSchema<{ city: string; unit: 'c' | 'f' }>(WEATHER.function.parameters as never) }) },
    toolChoice: 'required',
    temperature: 1,
    seed: 1,
    maxOutputTokens: 80,
  });
  assert.ok(r.toolCalls.length >= 1);
  assert.ok(validateWeather(r.toolCalls[0]?.input));
});
