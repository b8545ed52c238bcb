import t from 'tap';
import assert from 'node:assert/strict';
import { EngineError } from '../../../src/engine/errors.js';
import { CHAT, makeApp, parseSse, plainCap } from './helpers.js';

t.test('chat completion: OpenAI shape, usage, policy header and cap field', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'Hello world' });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ max_tokens: 5 }) });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['x-capserve-policy'], 'full');
  const body = res.json();
  assert.match(body.id, /^chatcmpl-[0-9a-f]{32}$/);
  assert.equal(body.object, 'chat.completion');
  assert.equal(body.model, 'scripted');
  assert.equal(typeof body.created, 'number');
  assert.deepEqual(body.choices, [
    { index: 0, message: { role: 'assistant', content: 'Hello', refusal: null }, logprobs: null, finish_reason: 'length', stop_reason: null },
  ]);
  const promptTokens = engine.requests[0]?.promptTokens.length ?? -1;
  assert.equal(promptTokens, (await engine.tokenize('<user>hi<assistant>')).length);
  assert.deepEqual(body.usage, {
    prompt_tokens: promptTokens,
    completion_tokens: 5,
    total_tokens: promptTokens + 5,
    prompt_tokens_details: { cached_tokens: 0 },
  });
  // The scripted engine reports full attention over everything it covered.
  assert.deepEqual(body.cap, {
    policy: 'full',
    kind: 'none',
    prompt_tokens: promptTokens,
    kv_tokens_retained: promptTokens + 5,
    context_tokens: promptTokens + 5,
    compression_ratio: 1,
    attention_mass_retained: null,
    ...plainCap(promptTokens, 5),
  });
  assert.equal(engine.requests[0]?.policy, 'full');
  assert.equal(engine.requests[0]?.servingPolicy, undefined, 'full attention needs no policy in the engine');
  assert.equal(engine.requests[0]?.captureLogprobs, undefined, 'full is never shadowed');
});

t.test('sampling parameters reach the engine; max_tokens defaults to the remaining context', async (t) => {
  const { app, engine } = makeApp(t, { contextLength: 64 });
  const res = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: CHAT({
      temperature: 0.7,
      top_p: 0.9,
      top_k: 40,
      min_p: 0.05,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      repetition_penalty: 1.1,
      logit_bias: { '72': 5, '10': -100 },
      seed: 7,
      stop: ['zz', 'yy'],
      stop_token_ids: [3],
      ignore_eos: true,
      user: 'someone',
    }),
  });
  assert.equal(res.statusCode, 200, res.body);
  const s = engine.requests[0]?.sampling;
  assert.ok(s);
  assert.equal(s.temperature, 0.7);
  assert.equal(s.topP, 0.9);
  assert.equal(s.topK, 40);
  assert.equal(s.minP, 0.05);
  assert.equal(s.presencePenalty, 0.5);
  assert.equal(s.frequencyPenalty, -0.5);
  assert.equal(s.repetitionPenalty, 1.1);
  assert.deepEqual(
    [...s.logitBias.entries()].sort((a, b) => a[0] - b[0]),
    [
      [10, -100],
      [72, 5],
    ],
  );
  assert.equal(s.seed, 7);
  assert.deepEqual(s.stop, ['zz', 'yy']);
  assert.deepEqual(s.stopTokenIds, [3]);
  assert.equal(s.ignoreEos, true);
  assert.equal(s.logprobs, null);
  const prompt = engine.requests[0]?.promptTokens.length ?? 0;
  assert.equal(s.maxTokens, 64 - prompt);
});

t.test('max_completion_tokens wins over max_tokens; developer role and text parts', async (t) => {
  const { app, engine } = makeApp(t);
  const res = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: {
      messages: [
        { role: 'developer', content: 'be brief' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'a' },
            { type: 'text', text: 'b' },
          ],
        },
      ],
      max_tokens: 9,
      max_completion_tokens: 3,
    },
  });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(engine.requests[0]?.sampling.maxTokens, 3);
  assert.equal(await engine.detokenize(engine.requests[0]?.promptTokens ?? []), '<system>be brief<user>a\nb<assistant>');
});

t.test('n > 1 runs n generations with seed+i, and counts prompt tokens once', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'abc' });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ n: 3, seed: 10, max_tokens: 2 }) });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json();
  assert.deepEqual(
    body.choices.map((c: { index: number }) => c.index),
    [0, 1, 2],
  );
  assert.deepEqual(
    engine.requests.map((r) => r.sampling.seed),
    [10, 11, 12],
  );
  assert.equal(new Set(engine.requests.map((r) => r.id)).size, 3);
  const prompt = engine.requests[0]?.promptTokens.length ?? 0;
  assert.deepEqual(body.usage, { prompt_tokens: prompt, completion_tokens: 6, total_tokens: prompt + 6, prompt_tokens_details: { cached_tokens: 0 } });
});

t.test('stop strings: finish_reason stop, text cut, stop_reason names the string', async (t) => {
  const { app } = makeApp(t, { reply: 'Hello world' });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ stop: 'wor', max_tokens: 50 }) });
  const choice = res.json().choices[0];
  assert.equal(choice.message.content, 'Hello ');
  assert.equal(choice.finish_reason, 'stop');
  assert.equal(choice.stop_reason, 'wor');
});

t.test('logprobs: content[] with token, logprob, bytes and top_logprobs', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'Hi' });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ logprobs: true, top_logprobs: 2, max_tokens: 2 }) });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(engine.requests[0]?.sampling.logprobs, 2);
  const lp = res.json().choices[0].logprobs;
  assert.equal(lp.content.length, 2);
  assert.deepEqual(lp.content[0], {
    token: 'H',
    logprob: -0.5,
    bytes: [72],
    top_logprobs: [
      { token: 'H', logprob: -0.5, bytes: [72] },
      { token: '?', logprob: -1.5, bytes: [63] },
    ],
  });
  const none = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ logprobs: true, max_tokens: 1 }) });
  assert.deepEqual(none.json().choices[0].logprobs.content[0].top_logprobs, []);
});

t.test('SSE: role chunk first, content deltas, finish chunk, usage chunk, [DONE]', async (t) => {
  const { app } = makeApp(t, { reply: 'Hey' });
  const res = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: CHAT({ stream: true, stream_options: { include_usage: true }, max_tokens: 3 }),
  });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
  assert.equal(res.headers['cache-control'], 'no-cache');
  assert.equal(res.headers['x-capserve-policy'], 'full');
  const { events, done } = parseSse(res.body);
  assert.ok(done);
  const ids = new Set(events.map((e) => e['id']));
  assert.equal(ids.size, 1);
  for (const e of events) {
    assert.equal(e['object'], 'chat.completion.chunk');
    assert.equal(e['model'], 'scripted');
    assert.ok('usage' in e, 'with include_usage every chunk has a usage key');
  }
  const choices = events.map((e) => e['choices'] as Record<string, unknown>[]);
  assert.deepEqual(choices[0], [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
  assert.deepEqual(
    choices.slice(1, 4).map((c) => (c[0]?.['delta'] as { content: string }).content),
    ['H', 'e', 'y'],
  );
  assert.equal(choices[4]?.[0]?.['finish_reason'], 'length');
  assert.deepEqual(choices[4]?.[0]?.['delta'], {});
  assert.equal(events[4]?.['usage'], null);
  assert.deepEqual(choices[5], []);
  const last = events[5] as { usage: { completion_tokens: number; total_tokens: number; prompt_tokens: number } };
  assert.equal(last.usage.completion_tokens, 3);
  assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + 3);
  // The cap object rides on the chunk with finish_reason.
  assert.equal((events[4]?.['cap'] as { policy: string; prompt_tokens: number }).policy, 'full');
  assert.equal((events[4]?.['cap'] as { prompt_tokens: number }).prompt_tokens, last.usage.prompt_tokens);
  assert.ok(!('cap' in last));
  assert.equal(events.length, 6);
});

t.test("SSE without include_usage: no usage keys, each finish chunk carries its choice's cap", async (t) => {
  const { app } = makeApp(t, { reply: 'ab' });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ stream: true, max_tokens: 2, n: 2 }) });
  const { events, done } = parseSse(res.body);
  assert.ok(done);
  for (const e of events) assert.ok(!('usage' in e));
  const finishes = events.filter((e) => (e['choices'] as { finish_reason: unknown }[])[0]?.finish_reason === 'length');
  assert.equal(finishes.length, 2);
  assert.deepEqual(
    events.filter((e) => 'cap' in e),
    finishes,
  );
  for (const f of finishes)
    assert.deepEqual(Object.keys(f['cap'] as object).sort(), [
      'attention_mass_retained',
      'compress_ms',
      'compressed_tokens',
      'compression_ratio',
      'context_tokens',
      'kind',
      'kv_tokens_retained',
      'original_tokens',
      'overflow',
      'policy',
      'prompt_tokens',
    ]);
  assert.equal((events.at(-1)?.['cap'] as { context_tokens: number }).context_tokens, (events.at(-1)?.['cap'] as { prompt_tokens: number }).prompt_tokens + 2);
  const roles = events.filter((e) => 'role' in ((e['choices'] as { delta: object }[])[0]?.delta ?? {}));
  assert.deepEqual(
    roles.map((e) => (e['choices'] as { index: number }[])[0]?.index),
    [0, 1],
  );
});

t.test('SSE stop string held back is never streamed', async (t) => {
  const { app } = makeApp(t, { reply: 'abcabd' });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ stream: true, stop: 'abd', max_tokens: 20 }) });
  const { events } = parseSse(res.body);
  const text = events.map((e) => (e['choices'] as { delta?: { content?: string } }[])[0]?.delta?.content ?? '').join('');
  assert.equal(text, 'abc');
  assert.equal((events.at(-1)?.['choices'] as { finish_reason: string }[])[0]?.finish_reason, 'stop');
});

t.test('an engine error after streaming began is sent as data: {"error"} then [DONE], without internals', async (t) => {
  const { app } = makeApp(t, { reply: 'abcdef', failAfterTokens: 2 });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ stream: true, max_tokens: 10 }) });
  assert.equal(res.statusCode, 200);
  const { events, done } = parseSse(res.body);
  assert.ok(done);
  const last = events.at(-1) as { error: { code: string; type: string; message: string; param: null } };
  assert.equal(last.error.code, 'engine_failed');
  assert.equal(last.error.type, 'server_error');
  assert.doesNotMatch(last.error.message, /secret|\.ts/);
});

t.test('engine rejections before the first token keep their HTTP status, even when streaming', async (t) => {
  const { app } = makeApp(t, { rejectWith: new EngineError('queue_full', 'queue is full', { retryAfterSeconds: 3 }) });
  for (const stream of [false, true]) {
    const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ stream }) });
    assert.equal(res.statusCode, 429);
    assert.equal(res.headers['retry-after'], '3');
    assert.equal(res.json().error.code, 'queue_full');
    assert.equal(res.json().error.type, 'rate_limit_error');
  }
});

t.test('engine error codes map to statuses', async (t) => {
  const cases = [
    [new EngineError('context_length_exceeded', 'too long: 600 > 512', { field: 'promptLength' }), 400, 'context_length_exceeded', null],
    [new EngineError('invalid_request', 'token id 9999 out of range', { field: 'promptTokens' }), 400, 'invalid_request', null],
    [new EngineError('no_chat_template', 'no template'), 400, 'no_chat_template', null],
    [new EngineError('not_ready', 'loading'), 503, 'not_ready', '5'],
    [new EngineError('shutting_down', 'bye'), 503, 'shutting_down', '5'],
    [new EngineError('engine_failed', 'ORT exploded at /x/y.ts:1'), 500, 'engine_failed', null],
  ] as const;
  for (const [err, status, code, retry] of cases) {
    const { app } = makeApp(t, { rejectWith: err });
    const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT() });
    assert.equal(res.statusCode, status, code);
    const body = res.json();
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(body.error.code, code);
    assert.equal(res.headers['retry-after'], retry ?? undefined);
    if (code === 'engine_failed') assert.doesNotMatch(body.error.message, /ORT|\.ts/);
    else assert.equal(body.error.message, err.message);
    // The engine names the request field; the API names the HTTP parameter.
    if (err.field !== null) assert.equal(body.error.param, { promptLength: 'messages', promptTokens: 'prompt' }[err.field as string]);
  }
});

t.test('context length: the 400 states the limit and the token counts', async (t) => {
  const { app } = makeApp(t, { contextLength: 30 });
  const long = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ messages: [{ role: 'user', content: 'x'.repeat(40) }] }) });
  assert.equal(long.statusCode, 400);
  assert.equal(long.json().error.code, 'context_length_exceeded');
  assert.match(long.json().error.message, /maximum context length is 30 tokens.*58 input tokens/);
  assert.equal(long.json().error.param, 'messages');
  // The prompt '<user>hi<assistant>' is 20 tokens with BOS: 20 + 10 fits exactly, 20 + 11 does not.
  const fits = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ max_tokens: 10 }) });
  assert.equal(fits.statusCode, 200);
  const budget = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ max_tokens: 11 }) });
  assert.equal(budget.statusCode, 400);
  assert.equal(budget.json().error.param, 'max_tokens');
  assert.match(budget.json().error.message, /maximum context length is 30 tokens\. However, you requested 31 tokens \(20 in the input, 11 in the completion\)/);
});

t.test('config model.contextLength caps the context', async (t) => {
  const { app } = makeApp(t, { contextLength: 1000 }, ['model.contextLength=20']);
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ max_tokens: 19 }) });
  assert.equal(res.statusCode, 400);
  assert.match(res.json().error.message, /maximum context length is 20 tokens/);
  const models = await app.inject({ method: 'GET', url: '/v1/models' });
  assert.equal(models.json().data[0].max_model_len, 20);
});

t.test('a model without a chat template: 400 no_chat_template that says what to do', async (t) => {
  const { app } = makeApp(t, { hasChatTemplate: false });
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT() });
  assert.equal(res.statusCode, 400);
  assert.equal(res.json().error.code, 'no_chat_template');
  assert.match(res.json().error.message, /no chat template.*chatTemplateFallback/);
});
