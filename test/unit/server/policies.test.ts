import t from 'tap';
import assert from 'node:assert/strict';
import { loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { describePolicies } from '../../../src/policies/registry.js';
import { buildApp } from '../../../src/server/app.js';
import { CHAT, makeApp, testPolicies } from './helpers.js';
import { ScriptedEngine } from './scripted-engine.js';
import { EventLog } from './ws-client.js';

t.test('GET /v1/policies lists the configured policies: {name, kind, method, params, cap}', async (t) => {
  const { app } = makeApp(t);
  const res = await app.inject({ method: 'GET', url: '/v1/policies' });
  assert.equal(res.statusCode, 200);
  const body = res.json() as { object: string; data: { name: string; kind: string; method: string; params: Record<string, unknown>; cap: unknown }[] };
  assert.equal(body.object, 'list');
  assert.deepEqual(
    body.data.map((p) => p.name),
    ['full', 'snapkv-25', 'h2o', 'quest'],
  );
  assert.deepEqual(body.data, JSON.parse(JSON.stringify(describePolicies(testPolicies()))));
  assert.deepEqual(body.data[0], { name: 'full', kind: 'none', method: 'none', params: {}, cap: { favors: ['A', 'C'], costs: 'P' } });
  assert.equal(body.data[1]?.params['budget'], 0.25);
  assert.deepEqual(body.data[1]?.cap, { favors: ['C', 'P'], costs: 'A' });
});

t.test('rules route by prompt length, tenant key and header; the policy reaches the engine and the response says so', async (t) => {
  const rules =
    '[{name: acme, match: {apiKey: k-acme}, policy: quest}, {name: long, match: {minPromptTokens: 20}, policy: snapkv-25}, {match: {header: {name: x-tier, value: cheap}}, policy: h2o}]';
  const { app, engine } = makeApp(t, {}, ['server.apiKeys=[k-acme, k-other]', `routing.rules=${rules}`]);
  const post = (auth: string, prompt: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/v1/completions', headers: { authorization: `Bearer ${auth}`, ...headers }, payload: { prompt, max_tokens: 2 } });
  const cases: [Awaited<ReturnType<typeof post>>, string][] = [
    [await post('k-acme', 'x'.repeat(30)), 'quest'],
    [await post('k-other', 'x'.repeat(30)), 'snapkv-25'],
    [await post('k-other', 'x', { 'x-tier': 'cheap' }), 'h2o'],
    [await post('k-other', 'x'), 'full'],
  ];
  cases.forEach(([res, policy], i) => {
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['x-capserve-policy'], policy);
    assert.equal(res.json().cap.policy, policy);
    assert.equal(engine.requests[i]?.policy, policy);
    assert.equal(engine.requests[i]?.servingPolicy?.name, policy === 'full' ? undefined : policy);
  });
  assert.equal(cases[0]?.[0].json().cap.kind, 'sparse-attention');
});

t.test('cap.favor picks a policy by CAP profile when no rule matches', async (t) => {
  const { app } = makeApp(t);
  const pick = async (favor: string[]): Promise<string> =>
    (await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: CHAT({ max_tokens: 1, cap: { favor } }) })).headers[
      'x-capserve-policy'
    ] as string;
  assert.equal(await pick(['C', 'P']), 'snapkv-25');
  assert.equal(await pick(['A', 'P']), 'quest');
  assert.equal(await pick(['C', 'A']), 'full');
});

t.test('a bad default policy or rule stops the app from being built, naming the path', async () => {
  const engine = new ScriptedEngine();
  const config = loadConfig({ overrides: ['routing.defaultPolicy=snapkv-50', 'routing.rules=[{match: {}, policy: nope}]'].map(parseOverride) });
  assert.throws(
    () => buildApp({ engine, config, policies: testPolicies() }),
    /\$\.routing\.defaultPolicy: unknown policy "snapkv-50"[\s\S]*\$\.routing\.rules\[0\]\.policy: rule 0 names an unknown policy "nope"/,
  );
});

t.test('shadow sampling: eviction requests capture rows, full ones never; a failing re-score is counted and the response is unaffected', async (t) => {
  const { app, engine } = makeApp(t, { reply: 'abc', contextLength: 1024 }, ['shadow.sampleRate=1']);
  const full = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', max_tokens: 3 } });
  assert.equal(full.statusCode, 200);
  assert.equal(engine.requests[0]?.captureLogprobs, undefined);
  const evicted = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', max_tokens: 3, n: 2, cap: { policy: 'h2o' } } });
  assert.equal(evicted.statusCode, 200);
  assert.equal(evicted.json().choices[0].text, 'abc');
  assert.equal(engine.requests[1]?.captureLogprobs, 64, 'choice 0 captures the steps shadow.maxTokens compares');
  assert.equal(engine.requests[2]?.captureLogprobs, undefined, 'one choice is enough');
  const tooLong = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', max_tokens: 257, cap: { policy: 'h2o' } } });
  assert.equal(tooLong.statusCode, 200);
  assert.equal(engine.requests[3]?.captureLogprobs, undefined, 'max_tokens above shadow.maxCaptureTokens');
  // The scripted engine cannot score: the re-score fails after the response, and is counted.
  await app.capserve.shadow.idle();
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /capserve_shadow_requests_total\{policy="h2o",outcome="failed"\} 1/);
  assert.doesNotMatch(metrics, /capserve_shadow_requests_total\{policy="full"/);
  assert.match(metrics, /capserve_compression_ratio_count\{policy="h2o"\} 3/);
});

t.test('shadow: a streamed request is handed over after [DONE]; an aborted one is skipped', async (t) => {
  const { app } = makeApp(t, { reply: 'abc' }, ['shadow.sampleRate=1']);
  const streamed = await app.inject({
    method: 'POST',
    url: '/v1/completions',
    payload: { prompt: 'x', max_tokens: 1, stream: true, cap: { policy: 'snapkv-25' } },
  });
  assert.match(streamed.body, /data: \[DONE\]\n\n$/);
  await app.capserve.shadow.idle();
  const slow = makeApp(t, { reply: 'abc', tokenDelayMs: 20 }, ['shadow.sampleRate=1', 'server.requestTimeoutMs=30']).app;
  const timedOut = await slow.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: 'x', max_tokens: 50, cap: { policy: 'snapkv-25' } } });
  assert.equal(timedOut.statusCode, 504);
  await slow.capserve.shadow.idle();
  assert.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /capserve_shadow_requests_total\{policy="snapkv-25",outcome="failed"\} 1/);
  const metrics = (await slow.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(metrics, /capserve_shadow_requests_total\{policy="snapkv-25",outcome="skipped"\} 1/);
  assert.doesNotMatch(metrics, /outcome="failed"/);
});

t.test("websocket: the upgrade request's x-capserve-policy routes every response; a response.create cap.policy wins", async (t) => {
  const { app, engine } = makeApp(t, { reply: 'Hey' });
  await app.ready();
  const ws = await app.injectWS('/v1/responses', { headers: { 'x-capserve-policy': 'snapkv-25' } });
  t.after(() => ws.terminate());
  const log = new EventLog(ws);
  const create = (extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ type: 'response.create', messages: [{ role: 'user', content: 'hi' }], max_output_tokens: 2, ...extra });
  ws.send(create());
  const first = (await log.next('response.completed'))['response'] as { cap: { policy: string; kind: string } };
  assert.equal(first.cap.policy, 'snapkv-25');
  assert.equal(first.cap.kind, 'kv-eviction');
  const from = log.events.length;
  ws.send(create({ cap: { policy: 'quest' } }));
  const second = (await log.next('response.completed', from))['response'] as { cap: { policy: string } };
  assert.equal(second.cap.policy, 'quest');
  assert.deepEqual(
    engine.requests.map((r) => r.servingPolicy?.name),
    ['snapkv-25', 'quest'],
  );
  const bad = log.events.length;
  ws.send(create({ cap: { policy: 'nope' } }));
  const error = (await log.next('error', bad))['error'] as { code: string; param: string };
  assert.deepEqual([error.code, error.param], ['unknown_policy', 'cap.policy']);
});
