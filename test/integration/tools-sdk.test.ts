/**
 * Structured outputs and tool calling through the official `openai` SDK (and the
 * AI SDK's generateObject) against the real server on stories260K, whose plain
 * template knows nothing of tools: the tools are described in a system
 * message, and `required` / named calls hold because the grammar enforces them.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import { z } from 'zod';
import { zodFunction, zodResponseFormat } from 'openai/helpers/zod';
import type { ChatCompletion, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { createOpenAI } from '@ai-sdk/openai';
import { generateObject, generateText, jsonSchema, tool } from 'ai';
import { storiesSkip as skip, useStoriesServer } from './stories-server.js';

const stories = useStoriesServer({ timeoutMs: 60_000 });
const ajv = new Ajv({ strict: false });

const Character = z.object({
  name: z.string().max(20),
  kind: z.enum(['cat', 'dog', 'girl', 'boy']),
  age: z.number().int(),
  happy: z.boolean(),
  toys: z.array(z.string().max(10)).max(3),
});

const WEATHER: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'] },
    strict: true,
  },
};
const TIME: ChatCompletionTool = {
  type: 'function',
  function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 8 } }, required: ['zone'] } },
};
const validateArgs: Record<string, ReturnType<typeof ajv.compile>> = {
  get_weather: ajv.compile(WEATHER.function.parameters ?? {}),
  get_time: ajv.compile(TIME.function.parameters ?? {}),
};

t.test('openai SDK chat.completions.parse with zodResponseFormat: 50 seeded samples at temperature 1 all parse', { skip }, async () => {
  const { client } = stories();
  for (let r = 0; r < 5; r++) {
    const completion = await client.chat.completions.parse({
      model: 'stories260K',
      messages: [{ role: 'user', content: 'Tell me about a character in the story.' }],
      response_format: zodResponseFormat(Character, 'character'),
      temperature: 1,
      seed: 10 + r,
      n: 10,
      max_tokens: 160,
    });
    assert.equal(completion.choices.length, 10);
    for (const choice of completion.choices) {
      const parsed = choice.message.parsed;
      assert.ok(parsed !== null, choice.message.content ?? '');
      assert.ok(Character.safeParse(parsed).success, JSON.stringify(parsed));
    }
  }
});

t.test('a tool loop with tool_choice required: valid calls, tool results in history, then an answer', { skip }, async () => {
  const { client } = stories();
  for (let seed = 0; seed < 10; seed++) {
    const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const first: ChatCompletion = await client.chat.completions.create({
      model: 'stories260K',
      messages,
      tools: [WEATHER, TIME],
      tool_choice: 'required',
      temperature: 1,
      seed,
      max_tokens: 100,
    });
    const choice = first.choices[0];
    assert.ok(choice);
    assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice.message));
    const calls = choice.message.tool_calls ?? [];
    assert.ok(calls.length >= 1);
    for (const call of calls) {
      assert.equal(call.type, 'function');
      if (call.type !== 'function') continue;
      assert.match(call.id, /^call_/);
      const validate = validateArgs[call.function.name];
      assert.ok(validate, call.function.name);
      assert.ok(validate(JSON.parse(call.function.arguments)), call.function.arguments);
    }
    messages.push(choice.message);
    for (const call of calls) messages.push({ role: 'tool', tool_call_id: call.id, content: '21C' });
    // tool_choice none: no tools in the prompt, the history's calls and results still render.
    const second: ChatCompletion = await client.chat.completions.create({
      model: 'stories260K',
      messages,
      tools: [WEATHER, TIME],
      tool_choice: 'none',
      temperature: 0,
      max_tokens: 10,
    });
    assert.equal(typeof second.choices[0]?.message.content, 'string');
    assert.equal(second.choices[0]?.message.tool_calls, undefined);
  }
});

t.test('a named function with parallel_tool_calls false: exactly one call to it', { skip }, async () => {
  const { client } = stories();
  for (let seed = 0; seed < 5; seed++) {
    const res: ChatCompletion = await client.chat.completions.create({
      model: 'stories260K',
      messages: [{ role: 'user', content: 'Hi' }],
      tools: [WEATHER, TIME],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
      parallel_tool_calls: false,
      temperature: 1,
      seed,
      max_tokens: 90,
    });
    const calls = res.choices[0]?.message.tool_calls ?? [];
    assert.equal(calls.length, 1);
    const call = calls[0];
    assert.ok(call && call.type === 'function');
    assert.equal(call.function.name, 'get_time');
    assert.ok(validateArgs['get_time']?.(JSON.parse(call.function.arguments)));
    assert.equal((res as unknown as { cap: { constraint: { type: string; name: string } } }).cap.constraint.type, 'tool_calls');
  }
});

t.test('streamed tool calls arrive as tool_calls deltas with finish_reason tool_calls (SDK stream helper)', { skip }, async () => {
  const { client } = stories();
  const stream = client.chat.completions.stream({
    model: 'stories260K',
    messages: [{ role: 'user', content: 'Weather?' }],
    tools: [zodFunction({ name: 'get_weather', parameters: z.object({ city: z.string().max(16), unit: z.enum(['c', 'f']) }) })],
    tool_choice: 'required',
    temperature: 1,
    seed: 3,
    max_tokens: 100,
  });
  let deltas = 0;
  for await (const chunk of stream) if ((chunk.choices[0]?.delta.tool_calls?.length ?? 0) > 0) deltas++;
  const final = await stream.finalChatCompletion();
  assert.ok(deltas >= 1);
  const choice = final.choices[0];
  assert.equal(choice?.finish_reason, 'tool_calls');
  const call = choice?.message.tool_calls?.[0];
  assert.ok(call && call.type === 'function');
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(Object.keys(call.function.parsed_arguments as object).sort(), ['city', 'unit']);
});

t.test('tool definitions the grammar cannot enforce are OpenAI-shaped 400s', { skip }, async () => {
  const res = await fetch(`${stories().server.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      messages: [{ role: 'user', content: 'x' }],
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { d: { type: 'string', format: 'date' } } } } }],
      tool_choice: 'required',
    }),
  });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { error: { param: string } };
  assert.equal(body.error.param, 'tools[0].function.parameters.properties.d.format');
  const missing = await fetch(`${stories().server.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }], tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'nope' } } }),
  });
  assert.equal(missing.status, 400);
  assert.equal(((await missing.json()) as { error: { param: string } }).error.param, 'tool_choice.function.name');
});

t.test('AI SDK generateObject (chat provider, json_schema) and generateText with a required tool', { skip }, async () => {
  const provider = createOpenAI({ baseURL: `${stories().server.baseUrl}/v1`, apiKey: 'unused' });
  for (let seed = 0; seed < 5; seed++) {
    const { object } = await generateObject({
      model: provider.chat('stories260K'),
      schema: Character,
      prompt: 'A character:',
      temperature: 1,
      seed,
      maxOutputTokens: 160,
    });
    assert.ok(Character.safeParse(object).success, JSON.stringify(object));
  }
  // The default provider speaks the Responses API: text.format json_schema.
  for (let i = 0; i < 3; i++) {
    const { object } = await generateObject({
      model: provider('stories260K'),
      schema: Character,
      prompt: 'A character:',
      temperature: 1,
      maxOutputTokens: 160,
    });
    assert.ok(Character.safeParse(object).success, JSON.stringify(object));
  }
  const r = await generateText({
    model: provider.chat('stories260K'),
    prompt: 'Weather in Oslo?',
    tools: { get_weather: tool({ description: 'weather', inputSchema: jsonSchema<{ city: string; unit: 'c' | 'f' }>(WEATHER.function.parameters as never) }) },
    toolChoice: 'required',
    temperature: 1,
    seed: 1,
    maxOutputTokens: 100,
  });
  assert.ok(r.toolCalls.length >= 1);
  assert.equal(r.toolCalls[0]?.toolName, 'get_weather');
  assert.ok(validateArgs['get_weather']?.(r.toolCalls[0]?.input));
});
