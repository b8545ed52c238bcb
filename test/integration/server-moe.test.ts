/**
 * EdgeMoE serving through the real command line: `capserve model create
 * --arch mixtral` makes a tiny MoE checkpoint, `capserve serve --policy
 * edgemoe --set policies.edgemoe.params.budgetBytes=65536` serves it with a
 * 64 KiB expert cache (about one fp32 expert), completions work, and the
 * expert cache metrics are on /metrics. A dense model with --policy edgemoe
 * stops at start with a clear error.
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
let root = '';
let child: ChildProcess | null = null;
let baseUrl = '';
let stderr = '';

/** Starts `capserve serve` with `args` in `cwd` (its compile cache lands there); resolves with the listening URL. */
function serve(args: readonly string[], cwd: string): Promise<string> {
  const proc = spawn(process.execPath, [cli, 'serve', '--port', '0', '--set', `policies.dir=${policiesDir}`, ...args], {
    cwd,
    env: { ...process.env, CAPSERVE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
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
  throw new Error(`not healthy within ${timeoutMs} ms:\n${stderr}`);
}

t.before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'capserve-moe-'));
  const modelDir = path.join(root, 'mixtral');
  const created = spawnSync(process.execPath, [cli, 'model', 'create', '--arch', 'mixtral', '--preset', 'tiny', '--seed', '1', '--out', modelDir], {
    encoding: 'utf8',
  });
  assert.equal(created.status, 0, created.stderr);
  baseUrl = await serve(
    [
      '--model',
      modelDir,
      '--policy',
      'edgemoe',
      '--set',
      `policies.edgemoe.params.budgetBytes=${BUDGET}`,
      '--set',
      'shadow.sampleRate=1',
      '--set',
      'shadow.expertOffload=true',
    ],
    root,
  );
  await waitHealthy(baseUrl, 60_000);
});

t.teardown(async () => {
  if (child !== null && child.exitCode === null) {
    const exited = new Promise((r) => child?.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(root, { recursive: true, force: true });
});

async function post(body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${baseUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function sample(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

t.test('a tiny mixtral served with a 64 KiB expert cache: completions work, reported as edgemoe', async () => {
  for (const prompt of ['Once upon a time', 'The little dog ran to the park and']) {
    const res = await post({ prompt, max_tokens: 12, temperature: 0, ignore_eos: true });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const usage = res.json['usage'] as { completion_tokens: number };
    assert.equal(usage.completion_tokens, 12);
    const cap = res.json['cap'] as { policy: string; kind: string };
    assert.deepEqual([cap.policy, cap.kind], ['edgemoe', 'expert-offload']);
  }
});

t.test('the expert cache metrics are on /metrics, labelled edgemoe, and the cache stays within the budget', async (t) => {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const get = (name: string): number => {
    const v = sample(text, `${name}{policy="edgemoe"}`);
    assert.ok(
      v !== null,
      `${name} is exported:\n${text
        .split('\n')
        .filter((l) => l.includes('expert'))
        .join('\n')}`,
    );
    return v;
  };
  const hits = get('capserve_expert_cache_hits_total');
  const misses = get('capserve_expert_cache_misses_total');
  const prefetchHits = get('capserve_expert_prefetch_hits_total');
  assert.ok(misses > 0, 'a 64 KiB cache cannot hold the experts: some are read on demand');
  assert.ok(hits + misses + prefetchHits > 0);
  assert.ok(get('capserve_expert_bytes_loaded_total') > 0);
  assert.ok(get('capserve_expert_load_stall_seconds_total') >= 0);
  const accuracy = get('capserve_expert_prefetch_accuracy');
  assert.ok(accuracy >= 0 && accuracy <= 1);
  const resident = get('capserve_expert_resident_bytes');
  assert.ok(resident >= 0 && resident <= BUDGET, `resident ${resident}`);
  assert.equal(get('capserve_expert_cache_budget_bytes'), BUDGET);
  assert.ok(get('capserve_resident_weight_bytes') > 0);
  t.comment(`hits ${hits}, prefetch hits ${prefetchHits}, misses ${misses}, prefetch accuracy ${accuracy.toFixed(3)}, resident ${resident} of ${BUDGET} bytes`);
});

t.test('the accuracy cost of edgemoe is measured: shadow fidelity against every expert resident at fp32', async (t) => {
  const deadline = Date.now() + 20_000;
  let kl: number | null = null;
  let scored: number | null = null;
  while (Date.now() < deadline) {
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    kl = sample(text, 'capserve_shadow_kl_divergence_sum{policy="edgemoe"}');
    scored = sample(text, 'capserve_shadow_requests_total{policy="edgemoe",outcome="scored"}');
    if (scored !== null && scored > 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(scored !== null && scored > 0, 'edgemoe requests were re-scored');
  assert.ok(kl !== null && kl >= 0, `KL sum ${kl}`);
  t.comment(`edgemoe shadow: ${scored} requests scored against the resident fp32 model, KL sum ${kl}`);
});

t.test('attention policies serve an MoE model too (its layer graphs have the stats and Quest variants)', async () => {
  for (const policy of ['snapkv', 'quest', 'knorm']) {
    const res = await post({ prompt: 'Once upon a time', max_tokens: 2, cap: { policy } });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal((res.json['cap'] as { policy: string }).policy, policy);
  }
});

t.test('a dense model with --policy edgemoe stops at start, saying why', { skip: storiesModelDir() === null ? 'stories260K not found' : false }, async () => {
  const proc = spawn(process.execPath, [cli, 'serve', '--model', storiesModelDir() as string, '--port', '0', '--policy', 'edgemoe'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (chunk: string) => (err += chunk));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  assert.equal(code, 1);
  assert.match(
    err,
    /\$\.routing\.defaultPolicy: policy "edgemoe" cannot serve this model: 'edgemoe' offloads the experts of mixture-of-experts models, and the served model is dense/,
  );
});
