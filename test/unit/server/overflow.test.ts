/**
 * Overflow modes and context compression through the HTTP API over the
 * scripted engine (one character, one token; BOS = 1): what the engine is
 * asked to do, what the response's cap object reports, and the errors. The
 * same paths run end to end on a real model in test/integration/server-overflow.test.ts.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { ConfigError } from '../../../src/config/config-overrides.js';
import { loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { parsePolicyFile, type Policy } from '../../../src/policies/registry.js';
import { buildApp } from '../../../src/server/app.js';
import { parseSse, testPolicies } from './helpers.js';
import { ScriptedEngine } from './scripted-engine.js';
import { EventLog } from './ws-client.js';

function policies(): ReadonlyMap<string, Policy> {
  const out = new Map(testPolicies());
  for (const p of [
    parsePolicyFile('name: sc\nkind: context-compression\nmethod: selective-context\nparams: {rate: 0.5}\n', '<test>/sc.yaml'),
    parsePolicyFile('name: streaming\nkind: kv-eviction\nmethod: streaming-llm\nparams: {budget: 32, sinkTokens: 4}\n', '<test>/streaming.yaml'),
  ]) {
    out.set(p.name, p);
  }
  return out;
}

function app(
  t: { after: (fn: () => Promise<void>) => void },
  sets: readonly string[] = [],
  contextLength = 64,
): { app: FastifyInstance; engine: ScriptedEngine } {
  const engine = new ScriptedEngine({ reply: 'ok', contextLength });
  const built = buildApp({ engine, config: loadConfig({ overrides: sets.map(parseOverride) }), policies: policies() });
  t.after(() => built.close());
  return { app: built, engine };
}

const text = (ids: readonly number[]): string =>
  ids
    .filter((id) => id !== 1)
    .map((id) => String.fromCharCode(id))
    .join('');

/** system, an old turn, an answer, the question: '<system>SYS<user>aaa...<assistant>bbb...<user>QUESTION?<assistant>'. */
const CHAT_MESSAGES = [
  { role: 'system', content: 'SYS' },
  { role: 'user', content: 'a'.repeat(80) },
  { role: 'assistant', content: 'b'.repeat(10) },
  { role: 'user', content: 'QUESTION?' },
];
const CHAT_PROMPT = `<system>SYS<user>${'a'.repeat(80)}<assistant>${'b'.repeat(10)}<user>QUESTION?<assistant>`;

interface Cap {
  policy: string;
  kind: string;
  original_tokens: number | null;
  compressed_tokens: number | null;
  overflow: Record<string, unknown>;
  dropped?: { text: string; tokens: number[] }[];
}

t.test('default mode error: 400 context_length_exceeded stating the window and both numbers', async (t) => {
  const { app: a } = app(t);
  const noRoom = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(70) } });
  assert.equal(noRoom.statusCode, 400);
  assert.equal(noRoom.json().error.code, 'context_length_exceeded');
  assert.equal(noRoom.json().error.param, 'prompt');
  assert.match(
    noRoom.json().error.message,
    /^This model's maximum context length is 64 tokens\. However, your request has 71 input tokens, which leaves no room for a completion\./,
  );
  const both = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(50), max_tokens: 20 } });
  assert.equal(both.statusCode, 400);
  assert.equal(both.json().error.param, 'max_tokens');
  assert.match(both.json().error.message, /maximum context length is 64 tokens\. However, you requested 71 tokens \(51 in the input, 20 in the completion\)\./);
  // What fits is served, and the report says nothing was done.
  const fits = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(50), max_tokens: 13 } });
  assert.equal(fits.statusCode, 200);
  assert.deepEqual(fits.json().cap.overflow, {
    mode: 'error',
    applied: false,
    tokens_before: 51,
    tokens_after: 51,
    dropped: 0,
    context_window: 64,
    max_tokens: 13,
  });
});

t.test('truncate (left, middle): exactly the excess goes, the system message and the question stay; the report and return_dropped say what', async (t) => {
  const { app: a, engine } = app(t, ['model.overflow=truncate'], 128);
  const total = 1 + CHAT_PROMPT.length;
  const left = await a.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { messages: CHAT_MESSAGES, max_tokens: 8, cap: { return_dropped: true } },
  });
  assert.equal(left.statusCode, 200, left.body);
  const sent = engine.requests[0]?.promptTokens ?? [];
  assert.equal(sent.length, 128 - 8);
  const excess = total - 120;
  assert.equal(excess, 25);
  assert.equal(text(sent), `<system>SYS<user>${'a'.repeat(80 - excess)}<assistant>${'b'.repeat(10)}<user>QUESTION?<assistant>`);
  const cap = left.json().cap as Cap;
  assert.deepEqual(cap.overflow, {
    side: 'left',
    mode: 'truncate',
    applied: true,
    tokens_before: total,
    tokens_after: 120,
    dropped: excess,
    context_window: 128,
    max_tokens: 8,
  });
  assert.deepEqual(cap.dropped, [{ text: 'a'.repeat(excess), tokens: Array<number>(excess).fill(97) }]);
  assert.equal(engine.requests[0]?.segments, undefined, 'segments go to the engine only for compression');

  const middle = await a.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { messages: CHAT_MESSAGES, max_tokens: 8, cap: { overflow: { mode: 'truncate', side: 'middle' } } },
  });
  assert.equal(middle.statusCode, 200);
  const kept = text(engine.requests[1]?.promptTokens ?? []);
  assert.ok(kept.startsWith('<system>SYS<user>a') && kept.endsWith('<user>QUESTION?<assistant>'), kept);
  assert.equal(kept.length + 1, 120);
  assert.equal((middle.json().cap as Cap).overflow['side'], 'middle');
  assert.equal((middle.json().cap as Cap).dropped, undefined, 'dropped only when asked');
  // A prompt that fits is left alone.
  const small = await a.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 } });
  assert.equal((small.json().cap as Cap).overflow['applied'], false);
  const metrics = (await a.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /capserve_overflow_requests_total\{policy="full",mode="truncate"\} 2/);
  assert.match(metrics, new RegExp(`capserve_prompt_tokens_dropped_total\\{policy="full",reason="truncate"\\} ${2 * excess}`));
});

t.test('truncate that cannot keep the system message: 400 stating both numbers and why', async (t) => {
  const { app: a } = app(t, ['model.overflow=truncate']);
  const res = await a.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: {
      messages: [
        { role: 'system', content: 's'.repeat(60) },
        { role: 'user', content: 'hi' },
      ],
      max_tokens: 8,
    },
  });
  assert.equal(res.statusCode, 400);
  assert.equal(res.json().error.code, 'context_length_exceeded');
  assert.equal(res.json().error.param, 'messages', 'the prompt alone fills the window');
  assert.match(
    res.json().error.message,
    /maximum context length is 64 tokens\. However, you requested 96 tokens \(88 in the input, 8 in the completion\)\. Overflow mode truncate keeps the system message, which with the template takes 75 tokens of the 56 available to the prompt\./,
  );
});

t.test('shift keeps the first n_keep tokens and drops the oldest after them in blocks; without max_tokens the completion gets the room left', async (t) => {
  const { app: a, engine } = app(t);
  const res = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(100), cap: { overflow: { mode: 'shift', keep: 4 } } } });
  assert.equal(res.statusCode, 200, res.body);
  const o = (res.json().cap as Cap).overflow;
  // Absent max_tokens: room for the reserve (16) is made: budget 48, blocks of (48 - 4) / 2 = 22, ceil(53 / 22) = 3 of them.
  assert.deepEqual([o['mode'], o['applied'], o['tokens_before'], o['keep'], o['block'], o['blocks']], ['shift', true, 101, 4, 22, 3]);
  assert.equal(o['tokens_after'], 101 - 66);
  assert.equal(o['max_tokens'], 64 - 35, 'shift freed more than the excess: the completion may use it');
  assert.equal(engine.requests[0]?.sampling.maxTokens, 29);
  assert.deepEqual(engine.requests[0]?.promptTokens.slice(0, 4), [1, 120, 120, 120]);
});

t.test('compress: routed to the named compression policy with the token target that fits; the engine reports what it reached', async (t) => {
  const { app: a, engine } = app(t, ['model.overflow={mode: compress, policy: sc}']);
  const res = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(100), max_tokens: 10, cap: { return_dropped: true } } });
  assert.equal(res.statusCode, 200, res.body);
  const r = engine.requests[0];
  assert.equal(r?.policy, 'sc');
  assert.equal(r?.servingPolicy?.kind, 'context-compression');
  assert.equal(r?.compressionRate, 54);
  assert.equal(r?.returnDropped, true);
  assert.deepEqual(
    r?.segments?.map((s) => [s.role, s.tokens.length]),
    [
      ['other', 1],
      ['context', 100],
    ],
  );
  assert.equal(res.headers['x-capserve-policy'], 'sc');
  const cap = res.json().cap as Cap;
  assert.equal(cap.policy, 'sc');
  assert.equal(cap.original_tokens, 101);
  assert.equal(cap.compressed_tokens, 54);
  assert.deepEqual(cap.overflow, {
    policy: 'sc',
    method: 'selective-context',
    target_tokens: 54,
    mode: 'compress',
    applied: true,
    tokens_before: 101,
    tokens_after: 54,
    dropped: 47,
    context_window: 64,
    max_tokens: 10,
  });
  assert.equal(cap.dropped?.[0]?.text, 'x'.repeat(47));
  const metrics = (await a.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /capserve_overflow_requests_total\{policy="sc",mode="compress"\} 1/);
  assert.match(metrics, /capserve_prompt_tokens_dropped_total\{policy="sc",reason="compression"\} 47/);
  assert.match(metrics, /capserve_compression_seconds_count\{policy="sc"\} 1/);
});

t.test('compress cannot fit when the parts it must keep are too long: 400 naming the numbers', async (t) => {
  const { app: a } = app(t, ['model.overflow={mode: compress, policy: sc}']);
  const res = await a.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { messages: [{ role: 'user', content: 'q'.repeat(70) }], max_tokens: 4 },
  });
  assert.equal(res.statusCode, 400);
  assert.equal(res.json().error.code, 'context_length_exceeded');
  assert.match(
    res.json().error.message,
    /you requested 92 tokens \(88 in the input, 4 in the completion\)\. Overflow mode compress \(policy sc\) must keep 88 tokens .* more than the 60 available/,
  );
});

t.test('evict, set on a routing rule: the prompt is untouched and served by the named eviction policy', async (t) => {
  const { app: a, engine } = app(t, ['routing.rules=[{name: long, match: {minPromptTokens: 60}, policy: full, overflow: {mode: evict, policy: streaming}}]']);
  const res = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(100), max_tokens: 4 } });
  assert.equal(res.statusCode, 200, res.body);
  assert.equal(engine.requests[0]?.servingPolicy?.name, 'streaming');
  assert.equal(engine.requests[0]?.promptTokens.length, 101);
  const cap = res.json().cap as Cap;
  assert.equal(cap.policy, 'streaming');
  assert.equal(cap.kind, 'kv-eviction');
  assert.deepEqual(cap.overflow, {
    policy: 'streaming',
    kv_token_limit: 64,
    mode: 'evict',
    applied: true,
    tokens_before: 101,
    tokens_after: 101,
    dropped: 0,
    context_window: 64,
    max_tokens: 4,
  });
  // A short prompt matches no rule: model.overflow (error) applies.
  const other = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(50), max_tokens: 20 } });
  assert.equal(other.statusCode, 400);
});

t.test('precedence: request > rule > model; a request may only name policies it could name as cap.policy', async (t) => {
  const { app: a } = app(t, ['model.overflow=truncate', 'routing.allowRequestOverride=[full, sc]']);
  const asked = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(100), max_tokens: 4, cap: { overflow: 'error' } } });
  assert.equal(asked.statusCode, 400);
  assert.equal(asked.json().error.code, 'context_length_exceeded');
  const byModel = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x'.repeat(100), max_tokens: 4 } });
  assert.equal((byModel.json().cap as Cap).overflow['mode'], 'truncate');
  const cases: [unknown, number, string, RegExp][] = [
    [{ mode: 'compress', policy: 'nope' }, 400, 'unknown_policy', /overflow mode compress names an unknown policy "nope"/],
    [{ mode: 'compress', policy: 'h2o' }, 400, 'invalid_request', /needs a context-compression policy, but "h2o" is kv-eviction/],
    [{ mode: 'evict', policy: 'streaming' }, 400, 'policy_not_allowed', /'streaming' may not be requested on this server\. Allowed: full, sc\./],
  ];
  // A bad overflow setting is the request's error whether or not its prompt overflows ('x' fits easily).
  for (const prompt of ['x'.repeat(100), 'x']) {
    for (const [overflow, status, code, message] of cases) {
      const res = await a.inject({ method: 'POST', url: '/v1/completions', payload: { prompt, max_tokens: 4, cap: { overflow } } });
      assert.equal(res.statusCode, status, `${JSON.stringify(overflow)}, prompt of ${prompt.length}`);
      assert.equal(res.json().error.code, code);
      assert.equal(res.json().error.param, 'cap.overflow.policy');
      assert.match(res.json().error.message, message);
    }
  }
});

t.test('overflow settings in the config naming missing or wrong-kind policies stop the app from being built', async () => {
  const engine = new ScriptedEngine();
  const config = loadConfig({
    overrides: ['model.overflow={mode: evict, policy: sc}', 'routing.rules=[{match: {}, policy: full, overflow: {mode: compress, policy: gone}}]'].map(
      parseOverride,
    ),
  });
  assert.throws(
    () => buildApp({ engine, config, policies: policies() }),
    (err: unknown) =>
      err instanceof ConfigError &&
      /\$\.model\.overflow: overflow mode evict needs a kv-eviction policy, but "sc" is context-compression/.test(err.message) &&
      /\$\.routing\.rules\[0\]\.overflow: overflow mode compress names an unknown policy "gone"/.test(err.message),
  );
});

t.test('a compression policy gets the chat as role-tagged segments (concatenation = the prompt), and return_dropped in JSON, SSE and websocket', async (t) => {
  const { app: a, engine } = app(t, [], 256);
  const res = await a.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { messages: CHAT_MESSAGES, max_tokens: 2, cap: { policy: 'sc', return_dropped: true } },
  });
  assert.equal(res.statusCode, 200, res.body);
  const r = engine.requests[0];
  assert.deepEqual(
    r?.segments?.map((s) => [s.role, text(s.tokens)]),
    [
      ['other', '<system>'],
      ['system', 'SYS'],
      ['other', '<user>'],
      ['context', 'a'.repeat(80)],
      ['other', '<assistant>'],
      ['context', 'b'.repeat(10)],
      ['other', '<user>'],
      ['question', 'QUESTION?'],
      ['other', '<assistant>'],
    ],
  );
  assert.equal(r?.segments?.[0]?.tokens[0], 1, 'BOS leads the first template segment');
  assert.deepEqual(
    r?.segments?.flatMap((s) => s.tokens),
    [...(r?.promptTokens ?? [])],
  );
  assert.equal(r?.compressionRate, undefined, "the policy's own rate");
  const cap = res.json().cap as Cap;
  assert.equal(cap.kind, 'context-compression');
  assert.equal(cap.original_tokens, 1 + CHAT_PROMPT.length);
  assert.equal(cap.compressed_tokens, 1 + CHAT_PROMPT.length - 45);
  assert.deepEqual(
    cap.dropped?.map((d) => d.text),
    ['a'.repeat(35), 'b'.repeat(10)],
  );

  const sse = await a.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    payload: { messages: CHAT_MESSAGES, max_tokens: 2, stream: true, cap: { policy: 'sc', return_dropped: true } },
  });
  const finish = parseSse(sse.body).events.find((e) => 'cap' in e);
  assert.deepEqual((finish?.['cap'] as Cap).dropped, cap.dropped);

  await a.ready();
  const ws = await a.injectWS('/v1/responses');
  t.after(() => ws.terminate());
  const log = new EventLog(ws);
  ws.send(JSON.stringify({ type: 'response.create', messages: CHAT_MESSAGES, max_output_tokens: 2, cap: { policy: 'sc', return_dropped: true } }));
  const completed = (await log.next('response.completed'))['response'] as { cap: Cap };
  assert.deepEqual(completed.cap.dropped, cap.dropped);
  assert.equal(completed.cap.compressed_tokens, cap.compressed_tokens);
});
