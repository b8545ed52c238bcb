import t from 'tap';
import assert from 'node:assert/strict';
import { CHAT, makeApp } from './helpers.js';

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string } };

function assertErrorShape(body: unknown): asserts body is ErrorBody {
  assert.ok(body !== null && typeof body === 'object' && 'error' in body);
  const error = (body as ErrorBody).error;
  assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof error.message, 'string');
  assert.equal(typeof error.type, 'string');
}

t.test('bad parameter values: 400 naming the parameter', async (t) => {
  const { app } = makeApp(t);
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ temperature: 'hot' }, 'temperature', /must be number/],
    [{ temperature: 2.5 }, 'temperature', /must be <= 2/],
    [{ top_p: 0 }, 'top_p', /must be > 0/],
    [{ max_tokens: 0 }, 'max_tokens', /must be >= 1/],
    [{ max_tokens: 1.5 }, 'max_tokens', /must be integer/],
    [{ n: 0 }, 'n', /must be >= 1/],
    [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', /must NOT have more than 4 items/],
    [{ stop: 5 }, 'stop', /must be string, or must be array/],
    [{ logit_bias: { abc: 1 } }, 'logit_bias', /Invalid key 'abc' in 'logit_bias': must match pattern/],
    [{ logit_bias: { '5': 101 } }, 'logit_bias[5]', /must be <= 100/],
    [{ messages: [] }, 'messages', /must NOT have fewer than 1 items/],
    [{ messages: [{ role: 'robot', content: 'x' }] }, 'messages[0].role', /must be "system"/],
    [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content', /must be string, or must be array/],
    [{ messages: [{ role: 'user' }] }, 'messages[0].content', /Missing required parameter/],
    [{ stream: 'yes' }, 'stream', /must be boolean/],
    [{ seed: 1.5 }, 'seed', /must be integer/],
    [{ stream_options: { include_usage: true } }, 'stream_options', /only allowed when 'stream' is enabled/],
    [{ top_logprobs: 2 }, 'top_logprobs', /requires 'logprobs'/],
    [{ top_logprobs: 21, logprobs: true }, 'top_logprobs', /must be <= 20/],
    [{ cap: { policy: 'snapkv' } }, 'cap.policy', /Unknown serving policy 'snapkv'. Allowed: full, snapkv-25, h2o, quest\./],
    [{ cap: { favor: ['C', 'A', 'P'] } }, 'cap.favor', /must NOT have more than 2 items/],
    [{ cap: { favor: ['X'] } }, 'cap.favor[0]', /must be "C"/],
    [{ cap: { overflow: 'squeeze' } }, 'cap.overflow', /Invalid value for 'cap.overflow': expected one of "error", "truncate", "shift", or an object/],
    [{ cap: { overflow: { mode: 'shift', kep: 4 } } }, 'cap.overflow', /expected one of .*\{mode: shift, keep\?: integer >= 0 \| "system"\}/],
    [{ cap: { overflow: { mode: 'compress' } } }, 'cap.overflow', /\{mode: compress, policy: NAME\}/],
    [{ cap: { return_dropped: 'yes' } }, 'cap.return_dropped', /must be boolean/],
    [{ cap: { squeeze: true } }, 'cap.squeeze', /Unrecognized request argument/],
  ];
  for (const [extra, param, message] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT(extra) });
    assert.equal(res.statusCode, 400, JSON.stringify(extra));
    const body: unknown = res.json();
    assertErrorShape(body);
    assert.equal(body.error.param, param, JSON.stringify(extra));
    assert.match(body.error.message, message, JSON.stringify(extra));
    assert.equal(body.error.type, 'invalid_request_error');
  }
  const missing = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: 'scripted' } });
  assert.equal(missing.json().error.param, 'messages');
  const notObject = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: [1, 2] });
  assert.equal(notObject.statusCode, 400);
  assert.match(notObject.json().error.message, /must be a JSON object/);
});

t.test('no coercion: "0.5" is not a number', async (t) => {
  const { app } = makeApp(t);
  const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ temperature: '0.5' }) });
  assert.equal(res.statusCode, 400);
  assert.equal(res.json().error.param, 'temperature');
});

t.test('null means "not given", as in OpenAI', async (t) => {
  const { app } = makeApp(t);
  const res = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: CHAT({ temperature: null, stop: null, seed: null, max_tokens: null, n: null, logprobs: null, stream: null, user: null, response_format: null }),
  });
  assert.equal(res.statusCode, 200, res.body);
});

t.test('unsupported OpenAI features: 400 unsupported_parameter naming them', async (t) => {
  const { app } = makeApp(t);
  const cases: [Record<string, unknown>, string][] = [
    [{ functions: [] }, 'functions'],
    [{ function_call: 'none' }, 'function_call'],
    [{ audio: {} }, 'audio'],
    [{ modalities: ['text'] }, 'modalities'],
    [{ guided_json: {} }, 'guided_json'],
    [{ messages: [{ role: 'function', content: 'x', name: 'f' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0].type'],
  ];
  for (const [extra, param] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT(extra) });
    assert.equal(res.statusCode, 400, JSON.stringify(extra));
    assert.equal(res.json().error.code, 'unsupported_parameter', JSON.stringify(extra));
    assert.equal(res.json().error.param, param);
    assert.match(res.json().error.message, /not supported/);
  }
  const text = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ response_format: { type: 'text' } }) });
  assert.equal(text.statusCode, 200);
  // Tool calling is a chat feature: completions name it as unsupported.
  for (const [key, value] of [
    ['tools', []],
    ['tool_choice', 'auto'],
    ['parallel_tool_calls', false],
  ] as const) {
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', [key]: value } });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.code, 'unsupported_parameter');
    assert.equal(res.json().error.param, key);
  }
});

t.test('response_format and tools: malformed ones are 400s naming the parameter', async (t) => {
  const { app } = makeApp(t);
  const cases: [Record<string, unknown>, string][] = [
    [{ response_format: { type: 'json_schema', json_schema: {} } }, 'response_format'],
    [
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } } },
      'response_format.json_schema.schema.pattern',
    ],
    [{ tool_choice: 'auto' }, 'tool_choice'],
    [
      {
        tools: [
          { type: 'function', function: { name: 'f' } },
          { type: 'function', function: { name: 'f' } },
        ],
      },
      'tools[1].function.name',
    ],
    [{ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }, 'tool_choice.function.name'],
    [
      { messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{not json' } }] }] },
      'messages[0].tool_calls[0].function.arguments',
    ],
  ];
  for (const [extra, param] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT(extra) });
    assert.equal(res.statusCode, 400, JSON.stringify(extra));
    assert.equal(res.json().error.type, 'invalid_request_error');
    assert.ok(String(res.json().error.param).startsWith(param), `${JSON.stringify(extra)}: ${res.json().error.param} / ${res.json().error.message}`);
  }
});

t.test('unknown parameters: 400 unknown_parameter, top-level and nested', async (t) => {
  const { app } = makeApp(t);
  const top = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ temprature: 1 }) });
  assert.equal(top.statusCode, 400);
  assert.deepEqual(top.json().error, {
    message: 'Unrecognized request argument supplied: temprature',
    type: 'invalid_request_error',
    param: 'temprature',
    code: 'unknown_parameter',
  });
  const nested = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ stream: true, stream_options: { include_usge: true } }) });
  assert.equal(nested.json().error.param, 'stream_options.include_usge');
});

t.test('unknown model: 404 model_not_found', async (t) => {
  const { app } = makeApp(t);
  const chat = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ model: 'gpt-4' }) });
  assert.equal(chat.statusCode, 404);
  assert.equal(chat.json().error.code, 'model_not_found');
  assert.equal(chat.json().error.param, 'model');
  assert.match(chat.json().error.message, /`gpt-4` does not exist/);
  const completion = await app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'gpt-4', prompt: 'x' } });
  assert.equal(completion.statusCode, 404);
  const one = await app.inject({ method: 'GET', url: '/v1/models/gpt-4' });
  assert.equal(one.statusCode, 404);
});

t.test('fastify errors in the OpenAI shape: 413, bad JSON, empty body, 415, 404 route', async (t) => {
  const { app } = makeApp(t, {}, ['server.bodyLimitBytes=2048']);
  const big = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ messages: [{ role: 'user', content: 'x'.repeat(5000) }] }) });
  assert.equal(big.statusCode, 413);
  assertErrorShape(big.json());
  assert.equal(big.json().error.code, 'body_too_large');

  const badJson = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: '{"model": ' });
  assert.equal(badJson.statusCode, 400);
  assert.equal(badJson.json().error.code, 'invalid_json');

  const empty = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, payload: '' });
  assert.equal(empty.statusCode, 400);
  assert.equal(empty.json().error.code, 'invalid_json');

  const media = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'content-type': 'application/xml' }, payload: '<x/>' });
  assert.equal(media.statusCode, 415);
  assert.equal(media.json().error.code, 'unsupported_media_type');

  const route = await app.inject({ method: 'POST', url: '/v1/embeddings', payload: {} });
  assert.equal(route.statusCode, 404);
  assertErrorShape(route.json());
  assert.equal(route.json().error.code, 'not_found');
  assert.match(route.json().error.message, /POST \/v1\/embeddings/);

  const upgrade = await app.inject({ method: 'GET', url: '/v1/responses' });
  assert.equal(upgrade.statusCode, 426);
  assert.equal(upgrade.json().error.code, 'upgrade_required');
});

t.test('not ready: inference routes and /health answer 503 with Retry-After', async (t) => {
  const { app } = makeApp(t, { ready: false });
  for (const [method, url, payload] of [
    ['POST', '/v1/chat/completions', CHAT()],
    ['POST', '/v1/completions', { prompt: 'x' }],
    ['GET', '/v1/models', undefined],
    ['GET', '/health', undefined],
  ] as const) {
    const res = await app.inject({ method, url, ...(payload ? { payload } : {}) });
    assert.equal(res.statusCode, 503, url);
    assert.equal(res.headers['retry-after'], '5');
    assert.equal(res.json().error.code, 'not_ready');
  }
  const metrics = await app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(metrics.statusCode, 200);
});

t.test('policy: x-capserve-policy header, body cap.policy, unknown policy', async (t) => {
  const { app, engine } = makeApp(t);
  const ok = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'x-capserve-policy': 'full' }, payload: CHAT() });
  assert.equal(ok.statusCode, 200);
  assert.equal(engine.requests[0]?.policy, 'full');
  const bad = await app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'x-capserve-policy': 'pyramidkv' }, payload: CHAT() });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.code, 'unknown_policy');
  assert.equal(bad.json().error.param, 'x-capserve-policy');
  const body = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ cap: { policy: 'full' } }) });
  assert.equal(body.statusCode, 200);
  const named = await app.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    headers: { 'x-capserve-policy': 'full' },
    payload: CHAT({ cap: { policy: 'h2o' } }),
  });
  assert.equal(named.statusCode, 200);
  assert.equal(named.headers['x-capserve-policy'], 'h2o', 'the body wins over the header');
  assert.equal(engine.requests.at(-1)?.servingPolicy?.name, 'h2o');
  assert.equal(engine.requests.at(-1)?.servingPolicy?.params['budget'], 0.2);
});

t.test('policy: allowRequestOverride limits what a request may name (400 policy_not_allowed listing what is allowed)', async (t) => {
  const { app } = makeApp(t, {}, ['routing.allowRequestOverride=[full, snapkv-25]']);
  const ok = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ cap: { policy: 'snapkv-25' } }) });
  assert.equal(ok.statusCode, 200);
  const no = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ cap: { policy: 'h2o' } }) });
  assert.equal(no.statusCode, 400);
  assert.deepEqual(no.json().error, {
    message: "The serving policy 'h2o' may not be requested on this server. Allowed: full, snapkv-25.",
    type: 'invalid_request_error',
    param: 'cap.policy',
    code: 'policy_not_allowed',
  });
  const none = makeApp(t, {}, ['routing.allowRequestOverride=false']).app;
  const off = await none.inject({ method: 'POST', url: '/v1/completions', headers: { 'x-capserve-policy': 'full' }, payload: { prompt: 'x', max_tokens: 1 } });
  assert.equal(off.statusCode, 400);
  assert.equal(off.json().error.code, 'policy_not_allowed');
  assert.equal(off.json().error.param, 'x-capserve-policy');
  assert.match(off.json().error.message, /allowRequestOverride is false/);
});

t.test('errors are counted in capserve_request_errors_total by code', async (t) => {
  const { app } = makeApp(t);
  await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ functions: [] }) });
  await app.inject({ method: 'GET', url: '/nope' });
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(text, /capserve_request_errors_total\{policy="full",code="unsupported_parameter"\} 1/);
  assert.match(text, /capserve_request_errors_total\{policy="full",code="not_found"\} 1/);
});

t.test('pattern extensions (structured_outputs, guided_*): bad patterns are 400s with the position; a good one is served', async (t) => {
  const { app } = makeApp(t);
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    [
      '/v1/chat/completions',
      { structured_outputs: { regex: '[a-' } },
      'structured_outputs.regex',
      /Invalid regex for 'structured_outputs.regex' at position 0: missing '\]'/,
    ],
    ['/v1/chat/completions', { guided_grammar: 'root ::= x\nx ::= x "a"' }, 'guided_grammar', /rule 'x' is left-recursive/],
    ['/v1/chat/completions', { guided_grammar: 'root ::= "a"\n  bad' }, 'guided_grammar', /line 2, column 6: expected '::='/],
    ['/v1/chat/completions', { guided_choice: [] }, 'guided_choice', /fewer than 1/],
    ['/v1/chat/completions', { structured_outputs: { regex: 'a', grammar: 'root ::= "a"' } }, 'structured_outputs.grammar', /Only one/],
    ['/v1/chat/completions', { structured_outputs: { structural_tag: {} } }, 'structured_outputs.structural_tag', /not supported/],
    ['/v1/completions', { guided_regex: 'a{3,1}' }, 'guided_regex', /at position 1: the repetition maximum/],
    ['/v1/completions', { guided_regex: 'a', response_format: { type: 'json_object' } }, 'response_format', /cannot be combined/],
  ];
  for (const [url, extra, param, message] of cases) {
    const payload = url === '/v1/completions' ? { prompt: 'x', ...extra } : CHAT(extra);
    const res = await app.inject({ method: 'POST', url, payload });
    assert.equal(res.statusCode, 400, `${JSON.stringify(extra)}: ${res.body}`);
    const body: unknown = res.json();
    assertErrorShape(body);
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.param, param, JSON.stringify(extra));
    assert.match(body.error.message, message);
  }
  const ok = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ structured_outputs: { regex: 'ab|c' } }) });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(ok.json().cap.constraint.type, 'regex');
});
