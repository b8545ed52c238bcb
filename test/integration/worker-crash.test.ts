/**
 * The inference worker dies mid-generation (an injected uncaught error): the
 * requests it was serving end with a 503 worker_restarting (OpenAI-shaped,
 * Retry-After), /health answers 503 while a new worker reloads the model, and
 * then the same process serves again, without a restart. A worker that cannot
 * reload the model is not retried (loading is deterministic).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING } from '../../src/engine/types.js';
import { TEST_CACHE_DIR } from '../helpers/session.js';
import { startServer, storiesModelDir, waitFor } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;

const long = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 400, ignore_eos: true, temperature: 0 };

t.test('a crashed inference worker: in-flight 503, /health 503, restarted with the model reloaded', { skip }, async (t) => {
  const warnings: string[] = [];
  const progress: string[] = [];
  const server = await startServer(modelDir as string, [], {
    engine: { faultInjection: true, restartDelayMs: 300, onWarning: (m) => warnings.push(m), onProgress: (m) => progress.push(m) },
  });
  t.after(() => server.close());
  const post = (body: Record<string, unknown>): Promise<Response> =>
    fetch(`${server.baseUrl}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  const restartsMetric = async (): Promise<string | undefined> =>
    (await (await fetch(`${server.baseUrl}/metrics`)).text()).split('\n').find((l) => l.startsWith('capserve_worker_restarts_total{'));

  const before = await post({ ...long, max_tokens: 4 });
  assert.equal(before.status, 200);
  assert.deepEqual(await (await fetch(`${server.baseUrl}/health`)).json(), { status: 'ok', worker: 'ready', worker_restarts: 0 });
  assert.equal(await restartsMetric(), 'capserve_worker_restarts_total{policy="full"} 0');

  const inflight = [post(long), post({ ...long, stream: true })];
  await waitFor(() => server.engine.health().running >= 2, 10_000, 'two requests running');
  server.engine.injectCrash();
  const [plain, streamed] = await Promise.all(inflight);

  assert.ok(plain !== undefined && streamed !== undefined);
  assert.equal(plain.status, 503);
  assert.equal(plain.headers.get('retry-after'), '5');
  const body = (await plain.json()) as { error: Record<string, unknown> };
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(body.error['code'], 'worker_restarting');
  assert.equal(body.error['type'], 'service_unavailable');
  assert.match(String(body.error['message']), /restarting; retry shortly/);
  // The stream had started (200): it ends with the error event instead of [DONE].
  const text = await streamed.text();
  assert.match(text, /"code":"worker_restarting"/);

  const health = await fetch(`${server.baseUrl}/health`);
  assert.equal(health.status, 503);
  assert.match(((await health.json()) as { error: { message: string } }).error.message, /restarting after a crash/);
  assert.equal(server.engine.health().worker, 'restarting');
  const during = await post({ ...long, max_tokens: 2 });
  assert.equal(during.status, 503);

  await waitFor(() => server.engine.health().ready, 60_000, 'the restarted worker ready');
  const healthy = await fetch(`${server.baseUrl}/health`);
  assert.equal(healthy.status, 200);
  assert.deepEqual(await healthy.json(), { status: 'ok', worker: 'ready', worker_restarts: 1 });
  assert.equal(await restartsMetric(), 'capserve_worker_restarts_total{policy="full"} 1');
  const after = await post({ ...long, max_tokens: 4 });
  assert.equal(after.status, 200);
  const choice = ((await after.json()) as { choices: { text: string }[] }).choices[0];
  assert.ok(choice !== undefined && choice.text.length > 0);

  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.match(warnings[0] ?? '', /^the inference worker crashed: injected crash; ending its requests with 503 and restarting it in 300 ms$/);
  assert.ok(progress.includes('inference worker restarted: model reloaded (restart 1)'), progress.join('\n'));
});

t.test('a restarted worker that cannot reload the model is not retried: the engine stays not ready and says why', { skip }, async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'capserve-crash-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'model');
  cpSync(modelDir as string, dir, { recursive: true });
  const warnings: string[] = [];
  const engine = await createLocalEngine({
    modelDir: dir,
    cacheDir: TEST_CACHE_DIR,
    threads: 1,
    faultInjection: true,
    restartDelayMs: 10,
    onWarning: (m) => warnings.push(m),
  });
  t.after(() => engine.close());
  assert.equal(engine.health().ready, true);
  // The checkpoint goes bad on disk while the first worker serves.
  const weights = path.join(dir, 'model.safetensors');
  truncateSync(weights, Math.floor(statSync(weights).size / 2));
  engine.injectCrash();
  await waitFor(() => warnings.length === 2, 30_000, 'the failed reload reported');
  assert.match(warnings[0] ?? '', /^the inference worker crashed: injected crash; .* restarting it in 10 ms$/);
  assert.match(
    warnings[1] ?? '',
    new RegExp(`^the restarted inference worker could not reload the model; not retrying: ${weights.replace(/[.]/g, '\\.')}: .*truncated`),
  );
  // What `serve` exits on (one line, exit 1), so a supervisor restarts the process.
  const failure = await engine.reloadFailed;
  assert.ok(failure.message.startsWith(`${weights}: `), failure.message);
  const health = engine.health();
  assert.equal(health.ready, false);
  assert.equal(health.notReady, 'The inference worker failed and was not restarted.');
  assert.equal(health.worker, 'failed');
  assert.equal(health.workerRestarts, 1);
  assert.throws(() => engine.generate({ id: 'x', promptTokens: [1], sampling: { ...DEFAULT_SAMPLING, maxTokens: 1 }, policy: 'full' }), {
    code: 'engine_failed',
  });
});
