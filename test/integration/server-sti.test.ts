/**
 * STI serving through the real command line: `capserve serve --policy sti --set
 * policies.sti.params.budgetBytes=65536` serves a dense model (stories260K when
 * ../shared has it, else a generated llama) with 64 KiB of resident shards,
 * well below its fp32 weights: completions work, the plan is in GET
 * /v1/policies and in each response's cap.weights, the STI metrics are on
 * /metrics, and shadow fidelity re-scores against the full-precision model.
 * With bits=32 at the same budget the greedy completion is exactly the plain
 * dense server's and its logprobs agree to float rounding (the dense server
 * decodes through the lean attention core, the STI graphs through the general
 * one: the same products up to rounding).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { storiesModelDir } from './server-harness.js';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli.js');
const policiesDir = path.resolve(process.cwd(), 'policies');
const BUDGET = 65536;
const PRELOAD = 16384;
let root = '';
let modelDir = '';
const children: ChildProcess[] = [];

function serve(args: readonly string[]): Promise<string> {
  const proc = spawn(process.execPath, [cli, 'serve', '--port', '0', '--model', modelDir, '--set', `policies.dir=${policiesDir}`, ...args], {
    cwd: root,
    env: { ...process.env, CAPSERVE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  let stderr = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (chunk: string) => (stderr += chunk));
  let stdout = '';
  return new Promise((resolve, reject) => {
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      stdout += chunk;
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
      if (m?.[1] !== undefined) resolve(m[1]);
    });
    proc.once('exit', (code) => reject(new Error(`capserve serve exited with ${code} before listening:\n${stdout}\n${stderr}`)));
  });
}

async function waitHealthy(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/health`).catch(() => null);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not healthy within ${timeoutMs} ms`);
}

async function post(url: string, body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function sample(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

interface WeightsCap {
  budget_bytes: number;
  resident_bytes: number;
  total_bytes: number;
  streamed_bytes_per_pass: number;
  bits_histogram: Record<string, number>;
  bits_per_shard: string[];
  shards: number;
}

let adaptive = '';

t.before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'capserve-sti-'));
  const stories = storiesModelDir();
  if (stories !== null) {
    modelDir = stories;
  } else {
    modelDir = path.join(root, 'llama');
    const created = spawnSync(process.execPath, [cli, 'model', 'create', '--arch', 'llama', '--preset', 'tiny', '--seed', '3', '--out', modelDir], {
      encoding: 'utf8',
    });
    assert.equal(created.status, 0, created.stderr);
  }
  adaptive = await serve([
    '--policy',
    'sti',
    '--set',
    `policies.sti.params.budgetBytes=${BUDGET}`,
    '--set',
    'policies.sti.params.calibrationTokens=64',
    '--set',
    `policies.sti.params.preloadBytes=${PRELOAD}`,
    '--set',
    'shadow.sampleRate=1',
    '--set',
    'shadow.expertOffload=true',
  ]);
  await waitHealthy(adaptive, 120_000);
});

t.teardown(async () => {
  for (const child of children) {
    if (child.exitCode !== null) continue;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(root, { recursive: true, force: true });
});

t.test('served under a 64 KiB resident budget, below the fp32 weights: completions work and report the plan', async (t) => {
  const res = await post(adaptive, { prompt: 'Once upon a time', max_tokens: 16, temperature: 0, ignore_eos: true });
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.equal((res.json['usage'] as { completion_tokens: number }).completion_tokens, 16);
  const cap = res.json['cap'] as { policy: string; kind: string; weights?: WeightsCap };
  assert.deepEqual([cap.policy, cap.kind], ['sti', 'weight-elastic']);
  const w = cap.weights;
  assert.ok(w !== undefined, 'cap.weights reports the plan');
  assert.equal(w.budget_bytes, BUDGET);
  assert.ok(w.resident_bytes <= BUDGET && w.resident_bytes > 0, `resident ${w.resident_bytes}`);
  assert.ok((w as unknown as { preload_bytes: number }).preload_bytes <= PRELOAD);
  assert.ok(w.total_bytes > BUDGET, 'the shards do not fit the budget: some stream');
  assert.ok(w.streamed_bytes_per_pass > 0);
  assert.equal(
    Object.values(w.bits_histogram).reduce((a, b) => a + b, 0),
    w.shards,
  );
  t.comment(
    `plan: ${w.shards} shards, resident ${w.resident_bytes} B of ${w.total_bytes} B, widths ${JSON.stringify(w.bits_histogram)}; layer 0: ${w.bits_per_shard[0]}`,
  );
  const policies = (await (await fetch(`${adaptive}/v1/policies`)).json()) as { data: Array<{ name: string; plan?: WeightsCap }> };
  assert.deepEqual(policies.data.find((p) => p.name === 'sti')?.plan, w);
});

t.test('the STI metrics are on /metrics: resident bytes within the budget, bytes read, IO stall, width histogram', async (t) => {
  const text = await (await fetch(`${adaptive}/metrics`)).text();
  const get = (series: string): number => {
    const v = sample(text, series);
    assert.ok(
      v !== null,
      `${series} is exported:\n${text
        .split('\n')
        .filter((l) => l.includes('sti'))
        .join('\n')}`,
    );
    return v;
  };
  const resident = get('capserve_sti_resident_shard_bytes{policy="sti"}');
  assert.ok(resident > 0 && resident <= BUDGET + PRELOAD, `resident ${resident}`);
  assert.ok(get('capserve_sti_shard_bytes_read_total{policy="sti"}') > 0);
  assert.ok(get('capserve_sti_shard_bytes_read_per_pass{policy="sti"}') > 0);
  assert.ok(get('capserve_sti_io_stall_seconds_total{policy="sti"}') >= 0);
  const widths = [32, 8, 4, 2].map((b) => get(`capserve_sti_shards{policy="sti",bits="${b}"}`));
  assert.ok(widths.reduce((a, b) => a + b, 0) > 0);
  t.comment(`resident ${resident} B, shards per width 32/8/4/2: ${widths.join('/')}`);
});

t.test('shadow fidelity re-scores sti requests against the full-precision model', async (t) => {
  const deadline = Date.now() + 30_000;
  let scored: number | null = null;
  let kl: number | null = null;
  while (Date.now() < deadline) {
    const text = await (await fetch(`${adaptive}/metrics`)).text();
    scored = sample(text, 'capserve_shadow_requests_total{policy="sti",outcome="scored"}');
    kl = sample(text, 'capserve_shadow_kl_divergence_sum{policy="sti"}');
    if (scored !== null && scored > 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(scored !== null && scored > 0, 'sti requests were re-scored');
  assert.ok(kl !== null && kl >= 0);
  t.comment(`sti shadow: ${scored} scored, KL sum ${kl}`);
});

t.test('bits=32 under the same 64 KiB budget: the greedy completion equals the plain dense server exactly, its logprobs to float rounding', async () => {
  const sti32 = await serve(['--policy', 'sti', '--set', `policies.sti.params.budgetBytes=${BUDGET}`, '--set', 'policies.sti.params.bits=32']);
  const plain = await serve(['--policy', 'full']);
  await Promise.all([waitHealthy(sti32, 120_000), waitHealthy(plain, 120_000)]);
  const body = { prompt: 'The little dog ran to the park and', max_tokens: 12, temperature: 0, ignore_eos: true, logprobs: 5 };
  const a = await post(sti32, body);
  const b = await post(plain, body);
  assert.equal(a.status, 200, JSON.stringify(a.json));
  assert.equal(b.status, 200, JSON.stringify(b.json));
  interface Logprobs {
    readonly tokens: readonly string[];
    readonly token_logprobs: readonly number[];
    readonly top_logprobs: readonly Readonly<Record<string, number>>[];
    readonly text_offset: readonly number[];
  }
  const choice = (r: { json: Record<string, unknown> }): { text: string; logprobs: Logprobs } => {
    const c = (r.json['choices'] as Array<{ text: string; logprobs: Logprobs }>)[0];
    if (!c) throw new Error('no choice');
    return c;
  };
  const [ca, cb] = [choice(a), choice(b)];
  assert.equal(ca.text, cb.text);
  assert.deepEqual(ca.logprobs.tokens, cb.logprobs.tokens);
  assert.deepEqual(ca.logprobs.text_offset, cb.logprobs.text_offset);
  ca.logprobs.token_logprobs.forEach((v, i) => assert.ok(Math.abs(v - (cb.logprobs.token_logprobs[i] ?? NaN)) <= 1e-4, `token ${i}: ${v}`));
  ca.logprobs.top_logprobs.forEach((top, i) => {
    const other = cb.logprobs.top_logprobs[i] ?? {};
    assert.deepEqual(Object.keys(top).sort(), Object.keys(other).sort(), `top tokens at ${i}`);
    for (const [k, v] of Object.entries(top)) assert.ok(Math.abs(v - (other[k] ?? NaN)) <= 1e-4, `top ${k} at ${i}`);
  });
  const w = (a.json['cap'] as { weights: WeightsCap }).weights;
  assert.deepEqual(w.bits_histogram, { '32': w.shards, '8': 0, '4': 0, '2': 0 });
});

t.test("a request routed to another policy still runs on the plan's weights, and its cap says so", async () => {
  const res = await post(adaptive, { prompt: 'Hi', max_tokens: 2, cap: { policy: 'full' } });
  assert.equal(res.status, 200, JSON.stringify(res.json));
  assert.ok((res.json['cap'] as { weights?: unknown }).weights !== undefined);
});

t.test('attention policies serve on elastic weights too (the STI layer graphs have the stats and Quest variants)', async () => {
  for (const policy of ['snapkv', 'quest', 'knorm']) {
    const res = await post(adaptive, { prompt: 'Once upon a time there was a little girl', max_tokens: 3, cap: { policy } });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const cap = res.json['cap'] as { policy: string; weights?: unknown };
    assert.equal(cap.policy, policy);
    assert.ok(cap.weights !== undefined);
  }
});
