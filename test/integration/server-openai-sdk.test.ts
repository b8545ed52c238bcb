import t from 'tap';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { loadConfig, parseOverride } from '../../src/config/load-config.js';
import { buildApp } from '../../src/server/app.js';
import { goldenPrompts, startServer, storiesModelDir, type RunningServer } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
let server: RunningServer;
let client: OpenAI;
const MODEL = 'stories260K';

t.before(async () => {
  if (modelDir === null) return;
  server = await startServer(modelDir);
  client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 });
});
t.teardown(async () => {
  await server?.close();
});

t.test('models.list lists the served model with its context length', { skip }, async () => {
  const page = await client.models.list();
  assert.equal(page.data.length, 1);
  assert.equal(page.data[0]?.id, MODEL);
  assert.equal(page.data[0]?.object, 'model');
  assert.equal((page.data[0] as unknown as { max_model_len: number }).max_model_len, 512);
  const one = await client.models.retrieve(MODEL);
  assert.equal(one.id, MODEL);
});

t.test('completions, greedy: the text is the reference greedy continuation', { skip }, async () => {
  const golden = goldenPrompts(modelDir as string).find((p) => p.name === 'once_upon_a_time');
  assert.ok(golden);
  const res = await client.completions.create({ model: MODEL, prompt: golden.text, max_tokens: 40, temperature: 0 });
  assert.equal(res.object, 'text_completion');
  assert.match(res.id, /^cmpl-/);
  const choice = res.choices[0];
  assert.ok(choice);
  assert.equal(choice.finish_reason, 'length');
  assert.ok(choice.text.length > 60, choice.text);
  assert.ok(golden.greedy_text.startsWith(choice.text), `${JSON.stringify(choice.text)} is not a prefix of the reference`);
  // 5 prompt tokens: less than one 16-token block, nothing to take from the prefix cache.
  assert.deepEqual(res.usage, {
    prompt_tokens: golden.input_ids.length,
    completion_tokens: 40,
    total_tokens: golden.input_ids.length + 40,
    prompt_tokens_details: { cached_tokens: 0 },
  });
  // Token-id prompts are the same prompt.
  const byIds = await client.completions.create({ model: MODEL, prompt: golden.input_ids, max_tokens: 40, temperature: 0 });
  assert.equal(byIds.choices[0]?.text, choice.text);
});

t.test('usage.prompt_tokens_details.cached_tokens counts the prompt tokens taken from the prefix cache', { skip }, async () => {
  const golden = goldenPrompts(modelDir as string).find((p) => p.name === 'tinystories_passage_300');
  assert.ok(golden);
  const ask = (): Promise<OpenAI.Completions.Completion> =>
    client.completions.create({ model: MODEL, prompt: golden.input_ids, max_tokens: 4, temperature: 0 });
  const cachedOf = (c: OpenAI.Completions.Completion): { usage: number | undefined; cap: number | undefined } => ({
    usage: c.usage?.prompt_tokens_details?.cached_tokens,
    cap: (c as unknown as { cap: { prefix_cache?: { cached_tokens: number } } }).cap.prefix_cache?.cached_tokens,
  });
  await ask();
  const again = await ask();
  // 301 prompt tokens: its 18 whole blocks of 16 were stored by the first request.
  assert.deepEqual(cachedOf(again), { usage: 288, cap: 288 });
  const stream = await client.completions.create({
    model: MODEL,
    prompt: golden.input_ids,
    max_tokens: 4,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let usage: OpenAI.Completions.CompletionUsage | undefined;
  for await (const chunk of stream) usage = chunk.usage ?? usage;
  assert.equal(usage?.prompt_tokens_details?.cached_tokens, 288);
  assert.equal(usage?.prompt_tokens, golden.input_ids.length);
});

t.test('generation stops at eos ids from generation_config.json (a list here: 2 and 1)', { skip }, async () => {
  // The reference greedy continuation of this passage emits BOS (id 1) after 31 tokens.
  const golden = goldenPrompts(modelDir as string).find((p) => p.name === 'tinystories_passage_300');
  assert.ok(golden);
  const res = await client.completions.create({ model: MODEL, prompt: golden.input_ids, max_tokens: 60, temperature: 0 });
  assert.equal(res.choices[0]?.finish_reason, 'stop');
  assert.equal(res.usage?.completion_tokens, 31 + 1);
  // The text continues the prompt in context (the first token keeps its leading space).
  assert.ok(golden.full_text.startsWith(golden.text + (res.choices[0]?.text ?? 'x')));
});

t.test('chat completion without streaming: OpenAI shape, usage matches /tokenize', { skip }, async () => {
  const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
  const res = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0 });
  assert.equal(res.object, 'chat.completion');
  assert.match(res.id, /^chatcmpl-/);
  assert.equal(res.model, MODEL);
  assert.equal(res.choices[0]?.message.role, 'assistant');
  assert.equal(typeof res.choices[0]?.message.content, 'string');
  assert.equal(res.choices[0]?.finish_reason, 'length');
  const tok = (await (
    await fetch(`${server.baseUrl}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages }) })
  ).json()) as { count: number };
  assert.equal(res.usage?.prompt_tokens, tok.count);
  assert.equal(res.usage?.completion_tokens, 12);
  assert.equal(res.usage?.total_tokens, tok.count + 12);
  assert.deepEqual((res as unknown as { cap: unknown }).cap, {
    policy: 'full',
    kind: 'none',
    prompt_tokens: tok.count,
    kv_tokens_retained: tok.count + 11,
    context_tokens: tok.count + 11,
    compression_ratio: 1,
    attention_mass_retained: null,
    original_tokens: null,
    compressed_tokens: null,
    compress_ms: null,
    overflow: { mode: 'error', applied: false, tokens_before: tok.count, tokens_after: tok.count, dropped: 0, context_window: 512, max_tokens: 12 },
  });
});

t.test('chat completion streaming: role first, deltas, finish, usage chunk; same text as non-streaming', { skip }, async () => {
  const messages = [{ role: 'user' as const, content: 'Once upon a time' }];
  const plain = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0 });
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages,
    max_tokens: 16,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0]?.choices[0]?.delta.role, 'assistant');
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  assert.equal(text, plain.choices[0]?.message.content);
  const finish = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(finish.length, 1);
  assert.equal(finish[0]?.choices[0]?.finish_reason, 'length');
  const last = chunks.at(-1);
  assert.deepEqual(last?.choices, []);
  const counts = (u: OpenAI.Completions.CompletionUsage | null | undefined): number[] => [
    u?.prompt_tokens ?? -1,
    u?.completion_tokens ?? -1,
    u?.total_tokens ?? -1,
  ];
  assert.deepEqual(counts(last?.usage), counts(plain.usage));
  // The same prompt again: its whole 16-token blocks come from the prefix cache.
  const prompt = plain.usage?.prompt_tokens ?? 0;
  assert.equal(last?.usage?.prompt_tokens_details?.cached_tokens, Math.floor(prompt / 16) * 16);
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
});

t.test('seed: same seed, same sampled text; n > 1 gives n choices', { skip }, async () => {
  const ask = (seed: number) => client.completions.create({ model: MODEL, prompt: 'Lily and Ben', max_tokens: 24, temperature: 1, seed });
  const [a, b, c] = await Promise.all([ask(1234), ask(1234), ask(99)]);
  assert.equal(a.choices[0]?.text, b.choices[0]?.text);
  assert.notEqual(a.choices[0]?.text, c.choices[0]?.text, 'a different seed samples differently (24 tokens at temperature 1)');
  const many = await client.completions.create({ model: MODEL, prompt: 'Lily and Ben', max_tokens: 24, temperature: 1, seed: 1234, n: 3 });
  assert.deepEqual(
    many.choices.map((ch) => ch.index),
    [0, 1, 2],
  );
  assert.equal(many.choices[0]?.text, a.choices[0]?.text, 'choice 0 uses the seed itself');
  assert.equal(many.usage?.completion_tokens, 72);
});

t.test('stop sequences cut the text and finish with stop', { skip }, async () => {
  const base = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 30, temperature: 0 });
  const text = base.choices[0]?.text ?? '';
  const stop = 'little girl';
  assert.ok(text.includes(stop), text);
  const res = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop: [stop, 'never-there'] });
  assert.equal(res.choices[0]?.text, text.slice(0, text.indexOf(stop)));
  assert.equal(res.choices[0]?.finish_reason, 'stop');
  const streamed = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stop, stream: true });
  let joined = '';
  for await (const chunk of streamed) joined += chunk.choices[0]?.text ?? '';
  assert.equal(joined, res.choices[0]?.text);
});

t.test('logprobs: chat logprobs.content and the legacy completions form', { skip }, async () => {
  const chat = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Hello' }],
    max_tokens: 6,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
  });
  const content = chat.choices[0]?.logprobs?.content ?? [];
  assert.equal(content.length, 6);
  for (const entry of content) {
    assert.ok(entry.logprob <= 0);
    assert.equal(entry.top_logprobs.length, 3);
    const tops = entry.top_logprobs.map((x) => x.logprob);
    assert.deepEqual(
      [...tops].sort((x, y) => y - x),
      tops,
      'sorted, most likely first',
    );
    // Greedy: the chosen token is the most likely one.
    assert.ok(Math.abs((tops[0] ?? 0) - entry.logprob) < 1e-6);
    assert.deepEqual(entry.bytes, [...Buffer.from(entry.token, 'utf8')]);
  }
  const legacy = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, logprobs: 2 });
  const lp = legacy.choices[0]?.logprobs;
  assert.ok(lp);
  assert.equal(lp.tokens?.length, 8);
  assert.equal(lp.tokens?.join(''), legacy.choices[0]?.text);
  assert.equal(lp.token_logprobs?.length, 8);
  assert.deepEqual(lp.text_offset?.slice(0, 2), [0, lp.tokens?.[0]?.length]);
  assert.ok(lp.top_logprobs?.every((m) => Object.keys(m).length >= 1 && Object.keys(m).length <= 2));
});

t.test('errors surface as the SDK APIError subclasses with status, code and param', { skip }, async () => {
  const expectError = async (
    fn: () => Promise<unknown>,
    ctor: new (...args: never[]) => InstanceType<typeof OpenAI.APIError>,
    status: number,
    code: string,
    param?: string,
  ) => {
    await assert.rejects(fn, (err: unknown) => {
      assert.ok(err instanceof ctor, `expected ${ctor.name}, got ${String(err)}`);
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      if (param !== undefined) assert.equal(err.param, param);
      return true;
    });
  };
  const messages = [{ role: 'user' as const, content: 'x' }];
  await expectError(() => client.chat.completions.create({ model: 'gpt-4o', messages }), OpenAI.NotFoundError, 404, 'model_not_found', 'model');
  await expectError(
    () => client.chat.completions.create({ model: MODEL, messages, temperature: 5 }),
    OpenAI.BadRequestError,
    400,
    'invalid_request',
    'temperature',
  );
  await expectError(
    () =>
      client.chat.completions.create({
        model: MODEL,
        messages,
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', format: 'date' } } },
      }),
    OpenAI.BadRequestError,
    400,
    'invalid_request',
    'response_format.json_schema.schema.format',
  );
  await expectError(
    () => client.completions.create({ model: MODEL, prompt: 'word '.repeat(600) }),
    OpenAI.BadRequestError,
    400,
    'context_length_exceeded',
    'prompt',
  );
  await expectError(
    () => client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 600 }),
    OpenAI.BadRequestError,
    400,
    'context_length_exceeded',
    'max_tokens',
  );

  // A second app over the same engine, with API keys.
  const config = loadConfig({ overrides: [`model.dir=${modelDir as string}`, 'server.apiKeys=[secret-key]'].map(parseOverride) });
  const locked = buildApp({ engine: server.engine, config });
  await locked.listen({ host: '127.0.0.1', port: 0 });
  try {
    const { port } = locked.server.address() as { port: number };
    const wrong = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'nope', maxRetries: 0 });
    await expectError(() => wrong.models.list(), OpenAI.AuthenticationError, 401, 'invalid_api_key');
    const right = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'secret-key', maxRetries: 0 });
    assert.equal((await right.models.list()).data[0]?.id, MODEL);
  } finally {
    await locked.close();
  }
});

t.test('chat on a model without a chat template and no fallback: 400 no_chat_template', { skip }, async () => {
  const config = loadConfig({ overrides: [`model.dir=${modelDir as string}`].map(parseOverride) });
  const { startLocalEngine } = await import('../../src/engine/local-engine.js');
  const bare = startLocalEngine({ modelDir: modelDir as string, threads: 1 });
  await bare.ready;
  const app = buildApp({ engine: bare, config });
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const { port } = app.server.address() as { port: number };
    const c = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0 });
    await assert.rejects(
      () => c.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] }),
      (err: unknown) => err instanceof OpenAI.BadRequestError && err.code === 'no_chat_template' && /chat template/.test(err.message),
    );
    // Completions still work.
    const res = await c.completions.create({ model: MODEL, prompt: 'Once', max_tokens: 3 });
    assert.equal(res.usage?.completion_tokens, 3);
  } finally {
    await app.close();
    await bare.close();
  }
});
