/**
 * Routing, policy reporting, C/A metrics and shadow fidelity through the real
 * server and engine on stories260K (no chat template: /v1/completions).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { goldenPrompts, startServer, storiesModelDir, waitFor, type RunningServer } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli.js');
let server: RunningServer;
/** 301 tokens of TinyStories: long enough that a 25% budget evicts. */
let passage: number[] = [];

t.before(async () => {
  if (modelDir === null) return;
  passage = goldenPrompts(modelDir).find((p) => p.name === 'tinystories_passage_300')?.input_ids ?? [];
  server = await startServer(modelDir, [
    'shadow.sampleRate=1',
    'routing.allowRequestOverride=[full, snapkv-25, knorm, streaming-llm]',
    // knorm keeping everything: its shadow KL must be ~0, which checks the alignment of captured and re-scored rows.
    'policies.knorm.params.budget=1',
  ]);
});
t.teardown(async () => {
  await server?.close();
});

interface Cap {
  policy: string;
  kind: string;
  prompt_tokens: number;
  kv_tokens_retained: number;
  context_tokens: number;
  compression_ratio: number;
  attention_mass_retained: number | null;
}

async function complete(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${server.baseUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'stories260K', temperature: 0, ...body }),
  });
}

async function metricsText(): Promise<string> {
  return (await fetch(`${server.baseUrl}/metrics`)).text();
}

/** A sample's value from the Prometheus text, or null when the series is absent. */
function sample(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

t.test('GET /v1/policies lists every shipped policy file plus full', { skip }, async () => {
  const shipped = readdirSync(path.resolve(process.cwd(), 'policies'))
    .filter((f) => /\.ya?ml$/.test(f))
    .map((f) => f.replace(/\.ya?ml$/, ''));
  const res = await fetch(`${server.baseUrl}/v1/policies`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as {
    object: string;
    data: { name: string; kind: string; method: string; params: Record<string, unknown>; cap: { favors: string[]; costs: string } }[];
  };
  assert.equal(body.object, 'list');
  assert.deepEqual(body.data.map((p) => p.name).sort(), [...new Set(['full', ...shipped])].sort());
  for (const p of body.data) {
    assert.deepEqual(Object.keys(p).sort(), ['cap', 'kind', 'method', 'name', 'params']);
    assert.equal(p.cap.favors.length, 2);
    assert.ok(!p.cap.favors.includes(p.cap.costs), `${p.name}: a policy pays with the axis it does not favour`);
  }
  assert.equal(body.data.find((p) => p.name === 'snapkv-25')?.params['budget'], 0.25);
  assert.equal(body.data.find((p) => p.name === 'knorm')?.params['budget'], 1, 'the --set override is what is served');
});

t.test('a request naming snapkv-25: the header and the cap object say what it did (compression ratio < 1)', { skip }, async () => {
  const res = await complete({ prompt: passage, max_tokens: 8, cap: { policy: 'snapkv-25' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-capserve-policy'), 'snapkv-25');
  const body = (await res.json()) as { cap: Cap; usage: { prompt_tokens: number; completion_tokens: number } };
  const cap = body.cap;
  assert.equal(cap.policy, 'snapkv-25');
  assert.equal(cap.kind, 'kv-eviction');
  assert.equal(cap.prompt_tokens, passage.length);
  // The last generated token is never fed back, so it is not in the cache.
  assert.equal(cap.context_tokens, passage.length + body.usage.completion_tokens - 1);
  assert.ok(cap.compression_ratio < 1 && cap.compression_ratio > 0, String(cap.compression_ratio));
  assert.ok(cap.kv_tokens_retained < cap.context_tokens);
  assert.ok(Math.abs(cap.compression_ratio - cap.kv_tokens_retained / cap.context_tokens) < 1e-9);
  assert.ok(cap.attention_mass_retained !== null && cap.attention_mass_retained > 0 && cap.attention_mass_retained <= 1);
  // The same request by header, streamed: the stream's head names the policy, the finish chunk carries the cap.
  const sse = await complete({ prompt: passage, max_tokens: 8, stream: true }, { 'x-capserve-policy': 'snapkv-25' });
  assert.equal(sse.headers.get('x-capserve-policy'), 'snapkv-25');
  const events = (await sse.text())
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)) as { choices: { finish_reason: string | null }[]; cap?: Cap });
  const finish = events.find((e) => e.choices[0]?.finish_reason !== null);
  assert.deepEqual(finish?.cap, cap, 'greedy: the same request does the same thing');
  assert.equal(events.filter((e) => e.cap !== undefined).length, 1);
});

t.test('a policy the config does not allow: 400 naming the parameter and what is allowed', { skip }, async () => {
  const res = await complete({ prompt: 'Once upon a time', max_tokens: 2, cap: { policy: 'h2o' } });
  assert.equal(res.status, 400);
  const { error } = (await res.json()) as { error: { code: string; param: string; message: string } };
  assert.equal(error.code, 'policy_not_allowed');
  assert.equal(error.param, 'cap.policy');
  assert.match(error.message, /Allowed: full, snapkv-25, knorm, streaming-llm\./);
  const unknown = await complete({ prompt: 'Once upon a time', max_tokens: 2 }, { 'x-capserve-policy': 'snapkv-7' });
  assert.equal(unknown.status, 400);
  assert.equal(((await unknown.json()) as { error: { param: string } }).error.param, 'x-capserve-policy');
});

t.test('shadow fidelity: eviction requests are re-scored against the full cache off the critical path; full never is', { skip }, async (t) => {
  await server.app.capserve.shadow.idle();
  const before = await metricsText();
  const scoredBefore = sample(before, 'capserve_shadow_requests_total{policy="snapkv-25",outcome="scored"}') ?? 0;
  const full = await complete({ prompt: passage, max_tokens: 8 });
  assert.equal(full.status, 200);
  assert.equal(full.headers.get('x-capserve-policy'), 'full');
  for (const policy of ['snapkv-25', 'knorm']) {
    const res = await complete({ prompt: passage, max_tokens: 24, cap: { policy } });
    assert.equal(res.status, 200);
  }
  let text = '';
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    text = await metricsText();
    if (
      (sample(text, 'capserve_shadow_requests_total{policy="snapkv-25",outcome="scored"}') ?? 0) > scoredBefore &&
      (sample(text, 'capserve_shadow_requests_total{policy="knorm",outcome="scored"}') ?? 0) >= 1
    ) {
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const stat = (policy: string): { kl: number; top1: number } => {
    const count = sample(text, `capserve_shadow_kl_divergence_count{policy="${policy}"}`) ?? 0;
    assert.ok(
      count >= 1,
      `${policy}: shadow KL observed (metrics:\n${text
        .split('\n')
        .filter((l) => l.includes('shadow'))
        .join('\n')})`,
    );
    const kl = (sample(text, `capserve_shadow_kl_divergence_sum{policy="${policy}"}`) ?? NaN) / count;
    const top1 =
      (sample(text, `capserve_shadow_top1_agreement_sum{policy="${policy}"}`) ?? NaN) /
      (sample(text, `capserve_shadow_top1_agreement_count{policy="${policy}"}`) ?? NaN);
    return { kl, top1 };
  };
  const snap = stat('snapkv-25');
  const keepAll = stat('knorm');
  t.comment(
    `snapkv-25: mean KL ${snap.kl.toExponential(3)}, top-1 ${snap.top1.toFixed(3)}; knorm keeping everything: KL ${keepAll.kl.toExponential(3)}, top-1 ${keepAll.top1}`,
  );
  assert.ok(snap.kl >= 0 && Number.isFinite(snap.kl));
  assert.ok(snap.top1 >= 0 && snap.top1 <= 1);
  assert.ok(keepAll.kl < 1e-4, `a policy that keeps everything must match the full cache: KL ${keepAll.kl}`);
  assert.equal(keepAll.top1, 1);
  assert.ok(snap.kl > keepAll.kl, 'evicting 75% of the prompt costs more than evicting nothing');
  // The full baseline is never shadowed.
  assert.equal(
    text.split('\n').some((l) => l.startsWith('capserve_shadow_requests_total{policy="full"')),
    false,
  );
  // C and A metrics by policy.
  assert.ok((sample(text, 'capserve_compression_ratio_count{policy="snapkv-25"}') ?? 0) >= 1);
  assert.ok((sample(text, 'capserve_compression_ratio_bucket{le="0.5",policy="snapkv-25"}') ?? 0) >= 1);
  assert.equal(sample(text, 'capserve_compression_ratio_bucket{le="0.99",policy="full"}'), 0);
  assert.ok((sample(text, 'capserve_attention_mass_retained_count{policy="snapkv-25"}') ?? 0) >= 1);
  assert.ok((sample(text, 'capserve_kv_tokens_retained_count{policy="full"}') ?? 0) >= 1);
  assert.equal(sample(text, 'capserve_longest_live_context_tokens{policy="snapkv-25"}'), 0, 'nothing running now');
  await waitFor(() => server.app.capserve.shadow.pending === 0, 5000, 'shadow queue drained');
});

t.test('capserve serve stops at start, naming the problem, for a bad default policy or a bad policy override', { skip }, async () => {
  const run = async (sets: string[]): Promise<{ code: number | null; stderr: string }> => {
    const child = spawn(process.execPath, [cli, 'serve', '--model', modelDir as string, '--port', '0', ...sets], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    return { code, stderr };
  };
  const badDefault = await run(['--policy', 'snapkv-30']);
  assert.equal(badDefault.code, 1);
  assert.match(badDefault.stderr, /\$\.routing\.defaultPolicy: unknown policy "snapkv-30" \(loaded: full, /);
  const badOverride = await run(['--set', 'policies.snapkv.params.budget=-1']);
  assert.equal(badOverride.code, 1);
  assert.match(badOverride.stderr, /policies\/snapkv\.yaml with \$\.policies\.snapkv\.params overrides: \/params\/budget/);
});
