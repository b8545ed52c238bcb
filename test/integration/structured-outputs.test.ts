/**
 * Structured outputs through the real server on stories260K, a model far too
 * small to write JSON on its own: with the grammar in the sampler, every output
 * parses and validates, streamed or not, at temperature 1, batched (n > 1),
 * under every serving policy.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import { storiesSkip as skip, useStoriesServer } from './stories-server.js';

const stories = useStoriesServer({ timeoutMs: 60_000 });
const ajv = new Ajv({ strict: false });

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 24 },
    age: { type: 'integer' },
    mood: { enum: ['happy', 'sad', 'sleepy'] },
    pets: { type: 'array', items: { type: 'string', maxLength: 12 }, maxItems: 3 },
    friend: { anyOf: [{ type: 'null' }, { $ref: '#/$defs/friend' }] },
  },
  required: ['name', 'age', 'mood', 'pets', 'friend'],
  additionalProperties: false,
  $defs: {
    friend: {
      type: 'object',
      properties: { name: { type: 'string', maxLength: 16 }, tall: { type: 'boolean' } },
      required: ['name', 'tall'],
      additionalProperties: false,
    },
  },
};
const validatePerson = ajv.compile(PERSON);

async function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${stories().server.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

interface ChatBody {
  choices: { message: { content: string }; finish_reason: string }[];
  cap: { constraint?: { type: string; name: string | null; complete: boolean | null; automaton_states: number | null; mask_ms: number | null } };
}

t.test('json_schema on chat: 50 seeded samples at temperature 1 (n = 10 per request) all parse and validate', { skip }, async () => {
  let complete = 0;
  for (let r = 0; r < 5; r++) {
    const res = await post('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Tell me about a person.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } },
      temperature: 1,
      seed: 100 + r,
      n: 10,
      max_tokens: 200,
    });
    assert.equal(res.status, 200, await res.clone().text());
    const body = (await res.json()) as ChatBody;
    assert.equal(body.choices.length, 10);
    for (const choice of body.choices) {
      const value: unknown = JSON.parse(choice.message.content);
      assert.ok(validatePerson(value), `${choice.message.content}: ${JSON.stringify(validatePerson.errors)}`);
      if (choice.finish_reason === 'stop') complete++;
    }
    const c = body.cap.constraint;
    assert.equal(c?.type, 'json_schema');
    assert.equal(c?.name, 'person');
    assert.ok((c?.automaton_states ?? 0) > 10);
    assert.ok(typeof c?.mask_ms === 'number');
  }
  assert.ok(complete > 0, 'some documents end before max_tokens');
});

t.test('json_schema streamed: the concatenated deltas parse and validate; cap in the final chunk', { skip }, async () => {
  for (let seed = 0; seed < 5; seed++) {
    const res = await post('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Once upon a time' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON } },
      temperature: 1,
      seed,
      max_tokens: 200,
      stream: true,
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    let content = '';
    let cap: ChatBody['cap'] | null = null;
    for (const line of text.split('\n')) {
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6)) as { choices: { delta: { content?: string } }[]; cap?: ChatBody['cap'] };
      content += chunk.choices[0]?.delta.content ?? '';
      if (chunk.cap !== undefined) cap = chunk.cap;
    }
    assert.ok(validatePerson(JSON.parse(content)), content);
    assert.equal(cap?.constraint?.type, 'json_schema');
  }
});

t.test('json_object on completions (a batch of prompts, n = 4): every text is a JSON object', { skip }, async () => {
  const res = await post('/v1/completions', {
    prompt: ['Once upon a time', 'The cat'],
    response_format: { type: 'json_object' },
    temperature: 1,
    seed: 5,
    n: 4,
    max_tokens: 60,
  });
  assert.equal(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { choices: { text: string }[]; cap: ChatBody['cap'] };
  assert.equal(body.choices.length, 8);
  for (const c of body.choices) {
    const value: unknown = JSON.parse(c.text);
    assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), c.text);
  }
  assert.equal(body.cap.constraint?.type, 'json_object');
});

t.test('every serving policy serves a constrained request and the output validates', { skip }, async () => {
  const list = (await (await fetch(`${stories().server.baseUrl}/v1/policies`)).json()) as { data: { name: string; kind: string }[] };
  // Expert offload and elastic weights are chosen when the model loads, not per request.
  const names = list.data.filter((p) => p.kind !== 'expert-offload' && p.kind !== 'weight-elastic').map((p) => p.name);
  assert.ok(names.length >= 5, names.join(','));
  const schema = {
    type: 'object',
    properties: { ok: { type: 'boolean' }, words: { type: 'array', items: { enum: ['cat', 'dog', 'sun'] } } },
    required: ['ok', 'words'],
    additionalProperties: false,
  };
  const validate = ajv.compile(schema);
  for (const policy of names) {
    const res = await post('/v1/completions', {
      prompt: 'Once upon a time there was a little girl who liked to play in the park with her dog. '.repeat(3),
      response_format: { type: 'json_schema', json_schema: { name: 'w', schema } },
      temperature: 1,
      seed: 1,
      n: 2,
      max_tokens: 40,
      cap: { policy },
    });
    assert.equal(res.status, 200, `${policy}: ${await res.clone().text()}`);
    const body = (await res.json()) as { choices: { text: string }[]; cap: { policy: string } };
    assert.equal(body.cap.policy, policy);
    for (const c of body.choices) assert.ok(validate(JSON.parse(c.text)), `${policy}: ${c.text}`);
  }
});

t.test('a tight max_tokens still ends in a valid document (the grammar closes it within budget)', { skip }, async () => {
  const schema = { type: 'object', properties: { story: { type: 'string' }, n: { type: 'number' } }, required: ['story', 'n'], additionalProperties: false };
  const validate = ajv.compile(schema);
  // The shortest document, {"story":"","n":0}, is 18 bytes: every byte has a token, so 18 tokens always suffice.
  for (const maxTokens of [18, 20, 24, 32]) {
    const res = await post('/v1/completions', {
      prompt: 'Once upon a time',
      response_format: { type: 'json_schema', json_schema: { name: 's', schema } },
      temperature: 1,
      seed: maxTokens,
      n: 4,
      max_tokens: maxTokens,
    });
    const body = (await res.json()) as { choices: { text: string }[] };
    for (const c of body.choices) assert.ok(validate(JSON.parse(c.text)), `max_tokens ${maxTokens}: ${c.text}`);
  }
});

t.test('Responses API text.format json_schema, JSON and SSE', { skip }, async () => {
  const format = { type: 'json_schema', name: 'person', schema: PERSON, strict: true };
  const res = await post('/v1/responses', { input: 'Describe a person.', text: { format }, temperature: 1, max_output_tokens: 200 });
  assert.equal(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { output_text: string; cap: ChatBody['cap'] };
  assert.ok(validatePerson(JSON.parse(body.output_text)), body.output_text);
  assert.equal(body.cap.constraint?.type, 'json_schema');
  const streamed = await post('/v1/responses', { input: 'Describe a person.', text: { format }, temperature: 1, max_output_tokens: 200, stream: true });
  const events = (await streamed.text())
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => JSON.parse(l.slice(6)) as { type: string; delta?: string });
  const text = events
    .filter((e) => e.type === 'response.output_text.delta')
    .map((e) => e.delta ?? '')
    .join('');
  assert.ok(validatePerson(JSON.parse(text)), text);
});

t.test('unsupported schema features are OpenAI-shaped 400s naming the schema path', { skip }, async () => {
  const cases: [unknown, string][] = [
    [
      { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'string', pattern: '^a' } }, required: ['a'] } } },
      'response_format.json_schema.schema.properties.a.pattern',
    ],
    [{ type: 'json_schema', json_schema: { name: 'bad name!', schema: {} } }, 'response_format.json_schema.name'],
    [{ type: 'json_schema', json_schema: { name: 'x', schema: { $ref: '#/$defs/nope' } } }, 'response_format.json_schema.schema.$ref'],
  ];
  for (const [format, param] of cases) {
    const res = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], response_format: format, max_tokens: 5 });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { type: string; param: string; code: string; message: string } };
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.param, param, body.error.message);
  }
  const res = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], response_format: { type: 'xml' } });
  assert.equal(res.status, 400);
});
