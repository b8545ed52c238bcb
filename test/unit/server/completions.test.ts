import t from 'tap';
import assert from 'node:assert/strict';
import { makeApp, parseSse, plainCap } from './helpers.js';

t.test('completion: text_completion shape with usage and cap', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'Hello' });
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'scripted', prompt: 'Once', max_tokens: 3 } });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(res.headers['x-capserve-policy'], 'full');
  const body = res.json();
  assert.match(body.id, /^cmpl-[0-9a-f]{32}$/);
  assert.equal(body.object, 'text_completion');
  assert.deepEqual(body.choices, [{ index: 0, text: 'Hel', logprobs: null, finish_reason: 'length', stop_reason: null }]);
  assert.deepEqual(body.usage, { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8, prompt_tokens_details: { cached_tokens: 0 } });
  assert.deepEqual(body.cap, {
    policy: 'full',
    kind: 'none',
    prompt_tokens: 5,
    kv_tokens_retained: 8,
    context_tokens: 8,
    compression_ratio: 1,
    attention_mass_retained: null,
    ...plainCap(5, 3),
  });
  assert.deepEqual(engine.requests[0]?.promptTokens, await engine.tokenize('Once'));
});

t.test('prompt forms: string, token ids, list of one string, list of one id list', async (t) => {
  const { app, engine } = makeApp(t);
  for (const prompt of ['AB', [65, 66], ['AB'], [[65, 66]]]) {
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt, max_tokens: 1 } });
    assert.equal(res.statusCode, 200, `${JSON.stringify(prompt)}: ${res.body}`);
  }
  assert.deepEqual(
    engine.requests.map((r) => r.promptTokens),
    [
      [1, 65, 66],
      [65, 66],
      [1, 65, 66],
      [65, 66],
    ],
  );
  // Lists of several prompts are batches (server-echo.test.ts runs them on the real model).
  for (const prompt of [
    ['a', 'b'],
    [[1], [2]],
  ]) {
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt, n: 2, max_tokens: 1 } });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(
      res.json().choices.map((c: { index: number }) => c.index),
      [0, 1, 2, 3],
    );
  }
  for (const prompt of [[], [-1], 5, ['a', 5], [[1], []]]) {
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt } });
    assert.equal(res.statusCode, 400, JSON.stringify(prompt));
    assert.equal(res.json().error.param?.startsWith('prompt'), true, res.body);
  }
  const empty = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: '', max_tokens: 1 } });
  assert.equal(empty.statusCode, 200, 'an empty string still has BOS');
});

t.test('legacy logprobs: tokens, token_logprobs, top_logprobs, text_offset', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'Hey' });
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', max_tokens: 3, logprobs: 2 } });
  assert.equal(engine.requests[0]?.sampling.logprobs, 2);
  assert.deepEqual(res.json().choices[0].logprobs, {
    tokens: ['H', 'e', 'y'],
    token_logprobs: [-0.5, -0.5, -0.5],
    top_logprobs: [
      { H: -0.5, '?': -1.5 },
      { e: -0.5, '?': -1.5 },
      { y: -0.5, '?': -1.5 },
    ],
    text_offset: [0, 1, 2],
  });
});

t.test('streaming completions: text chunks, finish chunk, usage chunk, [DONE]', async (t) => {
  const { app } = makeApp(t, { reply: 'Hey' });
  const res = await app.inject({
    method: 'POST',
    url: '/v1/completions',
    payload: { prompt: 'x', max_tokens: 3, stream: true, stream_options: { include_usage: true }, logprobs: 1 },
  });
  const { events, done } = parseSse(res.body);
  assert.ok(done);
  for (const e of events) assert.equal(e['object'], 'text_completion');
  const choices = events.map((e) => (e['choices'] as Record<string, unknown>[])[0]);
  assert.deepEqual(
    choices.slice(0, 3).map((c) => c?.['text']),
    ['H', 'e', 'y'],
  );
  assert.deepEqual(choices[1]?.['logprobs'], { tokens: ['e'], token_logprobs: [-0.5], top_logprobs: [{ e: -0.5 }], text_offset: [1] });
  assert.equal(choices[3]?.['finish_reason'], 'length');
  assert.deepEqual(events[3]?.['cap'], {
    policy: 'full',
    kind: 'none',
    prompt_tokens: 2,
    kv_tokens_retained: 5,
    context_tokens: 5,
    compression_ratio: 1,
    attention_mass_retained: null,
    ...plainCap(2, 3),
  });
  assert.deepEqual(events[4]?.['choices'], []);
  assert.deepEqual(events[4]?.['usage'], { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5, prompt_tokens_details: { cached_tokens: 0 } });
});

t.test('completion-only unsupported parameters', async (t) => {
  const { app } = makeApp(t);
  for (const [extra, param] of [
    [{ suffix: 'end' }, 'suffix'],
    [{ best_of: 3 }, 'best_of'],
  ] as const) {
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', ...extra } });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.code, 'unsupported_parameter');
    assert.equal(res.json().error.param, param);
  }
  const fine = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', echo: false, suffix: '', best_of: 2, n: 2, max_tokens: 1 } });
  assert.equal(fine.statusCode, 200, fine.body);
  // echo is supported (server-echo.test.ts); max_tokens 0 only with it.
  const echoed = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'xy', echo: true, max_tokens: 0 } });
  assert.equal(echoed.statusCode, 200, echoed.body);
  assert.equal(echoed.json().choices[0].text, 'xy');
  const zero = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', max_tokens: 0 } });
  assert.equal(zero.statusCode, 400);
  assert.equal(zero.json().error.param, 'max_tokens');
  const logprobs = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', logprobs: true } });
  assert.equal(logprobs.statusCode, 400);
  assert.equal(logprobs.json().error.param, 'logprobs');
});

t.test('completions: context overflow is a 400 naming prompt or max_tokens', async (t) => {
  const { app } = makeApp(t, { contextLength: 10 });
  const long = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(20) } });
  assert.equal(long.statusCode, 400);
  assert.equal(long.json().error.code, 'context_length_exceeded');
  assert.equal(long.json().error.param, 'prompt');
  assert.match(long.json().error.message, /maximum context length is 10 tokens.*21 input tokens/);
  const budget = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'xx', max_tokens: 8 } });
  assert.equal(budget.statusCode, 400);
  assert.equal(budget.json().error.param, 'max_tokens');
});
