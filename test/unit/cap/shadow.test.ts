import t from 'tap';
import assert from 'node:assert/strict';
import { ShadowFidelity, type ShadowOptions } from '../../../src/cap/shadow.js';
import { EngineError } from '../../../src/engine/errors.js';
import type { ScoreRequest, ScoreResult } from '../../../src/engine/types.js';
import { createMetrics, METRIC_NAMES, type CapserveMetrics } from '../../../src/metrics/metrics.js';
import { FULL_POLICY, parsePolicyFile } from '../../../src/policies/registry.js';

const SNAPKV = parsePolicyFile('name: snapkv-25\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.25}\n', '<test>');
const V = 4;

/** log-softmax of a row of logits. */
function logSoftmax(logits: readonly number[]): number[] {
  const max = Math.max(...logits);
  const lse = max + Math.log(logits.reduce((s, l) => s + Math.exp(l - max), 0));
  return logits.map((l) => l - lse);
}

/** A scoring engine whose full-cache rows are given; scores wait for `release` when `hold` is set. */
class ScoringEngine {
  readonly requests: ScoreRequest[] = [];
  hold = false;
  private waiting: (() => void)[] = [];
  constructor(private readonly rowFor: (position: number) => number[] | Error) {}

  release(): void {
    const w = this.waiting;
    this.waiting = [];
    for (const f of w) f();
  }

  async score(request: ScoreRequest, signal?: AbortSignal): Promise<ScoreResult> {
    this.requests.push(request);
    if (this.hold) {
      await new Promise<void>((resolve, reject) => {
        this.waiting.push(resolve);
        signal?.addEventListener('abort', () => reject(new EngineError('invalid_request', 'aborted')));
      });
    }
    const rows: number[] = [];
    for (let pos = request.from; pos <= request.tokens.length - 2; pos++) {
      const row = this.rowFor(pos);
      if (row instanceof Error) throw row;
      rows.push(...logSoftmax(row));
    }
    const policy = {
      policy: 'full',
      kind: 'none' as const,
      promptTokens: 0,
      kvTokensRetained: 0,
      contextTokens: 0,
      compressionRatio: 1,
      attentionMassRetained: null,
      details: {},
    };
    return { targetLogprobs: new Float32Array(0), rows: Float32Array.from(rows), vocabSize: V, policy };
  }
}

const OPTIONS: ShadowOptions = { sampleRate: 1, maxQueued: 4, maxTokens: 64, maxCaptureTokens: 256 };

async function samples(metrics: CapserveMetrics, name: string): Promise<{ value: number; labels: Record<string, string | number>; metricName?: string }[]> {
  return ((await metrics.registry.getSingleMetric(name)?.get())?.values ?? []) as {
    value: number;
    labels: Record<string, string | number>;
    metricName?: string;
  }[];
}

async function outcomes(metrics: CapserveMetrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of await samples(metrics, METRIC_NAMES.shadowRequests)) out[`${v.labels['policy']}/${v.labels['outcome']}`] = v.value;
  return out;
}

const idleMetrics = (): CapserveMetrics => createMetrics({ policy: 'full', snapshot: () => null });

t.test('sampling: never the full baseline; counter-based rate; max_tokens above maxCaptureTokens not sampled', async () => {
  const shadow = new ShadowFidelity(new ScoringEngine(() => [0, 0, 0, 0]), idleMetrics(), { ...OPTIONS, sampleRate: 0.25 });
  assert.equal(shadow.sample(FULL_POLICY, 8, [1]), null);
  const picks = Array.from({ length: 12 }, () => shadow.sample(SNAPKV, 8, [1]) !== null);
  assert.deepEqual(picks, [false, false, false, true, false, false, false, true, false, false, false, true]);
  const all = new ShadowFidelity(new ScoringEngine(() => [0, 0, 0, 0]), idleMetrics(), OPTIONS);
  assert.notEqual(all.sample(SNAPKV, 256, [1]), null);
  assert.equal(all.sample(SNAPKV, 257, [1]), null);
  const off = new ShadowFidelity(new ScoringEngine(() => [0, 0, 0, 0]), idleMetrics(), { ...OPTIONS, sampleRate: 0 });
  assert.equal(off.sample(SNAPKV, 8, [1]), null);
});

t.test('re-scores prompt + the first maxTokens generated steps with the full cache, and observes KL and top-1', async () => {
  const fullLogits = [
    [2, 1, 0, 0],
    [0, 3, 0, 0],
    [0, 0, 1, 0],
  ];
  const engine = new ScoringEngine((pos) => fullLogits[pos - 2] ?? new Error(`unexpected position ${pos}`));
  const metrics = idleMetrics();
  const shadow = new ShadowFidelity(engine, metrics, { ...OPTIONS, maxTokens: 3 });
  const prompt = [7, 8, 9];
  const ticket = shadow.sample(SNAPKV, 8, prompt);
  assert.ok(ticket);
  // The policy saw the same first step, a different second (argmax 0, not 1), a same-argmax third; a fourth is beyond maxTokens.
  const policyLogits = [
    [2, 1, 0, 0],
    [1, 0, 0, 0],
    [0, 0, 2, 0],
    [9, 9, 9, 9],
  ];
  ticket.submit([1, 2, 3, 0], Float32Array.from(policyLogits.flatMap(logSoftmax)));
  ticket.skip();
  await shadow.idle();
  assert.equal(engine.requests.length, 1);
  const req = engine.requests[0] as ScoreRequest;
  assert.deepEqual(req.tokens, [7, 8, 9, 1, 2, 3]);
  assert.equal(req.from, 2);
  assert.equal(req.mode, 'rows');
  assert.equal(req.servingPolicy, undefined, 'the reference is the full-cache model');
  const kl = (p: number[], q: number[]): number => {
    const lp = logSoftmax(p);
    const lq = logSoftmax(q);
    return lp.reduce((s, l, i) => s + Math.exp(l) * (l - (lq[i] as number)), 0);
  };
  const expected = fullLogits.reduce((s, row, i) => s + kl(row, policyLogits[i] as number[]), 0) / 3;
  const klSum = (await samples(metrics, METRIC_NAMES.shadowKlDivergence)).find((v) => v.metricName?.endsWith('_sum'));
  assert.equal(klSum?.labels['policy'], 'snapkv-25');
  assert.ok(Math.abs((klSum?.value ?? NaN) - expected) < 1e-5, `${klSum?.value} vs ${expected}`);
  const top1Sum = (await samples(metrics, METRIC_NAMES.shadowTop1Agreement)).find((v) => v.metricName?.endsWith('_sum'));
  assert.ok(Math.abs((top1Sum?.value ?? NaN) - 2 / 3) < 1e-9);
  assert.deepEqual(await outcomes(metrics), { 'snapkv-25/scored': 1 });
});

t.test('bounded: one re-score at a time, maxQueued in all, the rest dropped and counted; nothing blocks the caller', async () => {
  const engine = new ScoringEngine(() => [1, 0, 0, 0]);
  engine.hold = true;
  const metrics = idleMetrics();
  const shadow = new ShadowFidelity(engine, metrics, { ...OPTIONS, maxQueued: 2 });
  const rows = Float32Array.from(logSoftmax([1, 0, 0, 0]));
  const tickets = Array.from({ length: 3 }, () => shadow.sample(SNAPKV, 8, [5]));
  assert.ok(
    tickets.every((t) => t !== null),
    'none queued yet: all three sampled',
  );
  for (const t of tickets) t?.submit([0], rows);
  assert.equal(shadow.pending, 2);
  // Full already: a new request is not even asked to capture.
  assert.equal(shadow.sample(SNAPKV, 8, [5]), null);
  await new Promise((r) => setImmediate(r));
  assert.equal(engine.requests.length, 1, 'one at a time');
  engine.release();
  await new Promise((r) => setTimeout(r, 5));
  engine.release();
  await shadow.idle();
  assert.equal(engine.requests.length, 2);
  assert.deepEqual(await outcomes(metrics), { 'snapkv-25/dropped': 2, 'snapkv-25/scored': 2 });
});

t.test('engine errors and mismatched rows are counted as failed, never thrown; nothing generated is skipped', async () => {
  const metrics = idleMetrics();
  const warnings: string[] = [];
  const log = { warn: (_d: Record<string, unknown>, m: string) => void warnings.push(m) };
  const failing = new ShadowFidelity(new ScoringEngine(() => new EngineError('engine_failed', 'boom')), metrics, OPTIONS, log);
  failing.sample(SNAPKV, 8, [5])?.submit([0], Float32Array.from(logSoftmax([1, 0, 0, 0])));
  await failing.idle();
  // Captured rows that are not a whole number of rows per token.
  failing.sample(SNAPKV, 8, [5])?.submit([0, 1], new Float32Array(5));
  // A vocabulary that disagrees with the engine's.
  failing.sample(SNAPKV, 8, [5])?.submit([0], new Float32Array(3));
  await failing.idle();
  failing.sample(SNAPKV, 8, [5])?.submit([], new Float32Array(0));
  failing.sample(SNAPKV, 8, [5])?.skip();
  assert.deepEqual(await outcomes(metrics), { 'snapkv-25/failed': 3, 'snapkv-25/skipped': 2 });
  assert.equal(warnings.length, 3);
  assert.deepEqual(await samples(metrics, METRIC_NAMES.shadowKlDivergence).then((s) => s.filter((v) => v.metricName?.endsWith('_count'))), []);
});

t.test('close drops the queue and aborts the running re-score without counting it', async () => {
  const engine = new ScoringEngine(() => [1, 0, 0, 0]);
  engine.hold = true;
  const metrics = idleMetrics();
  const shadow = new ShadowFidelity(engine, metrics, OPTIONS);
  for (let i = 0; i < 2; i++) shadow.sample(SNAPKV, 8, [5])?.submit([0], Float32Array.from(logSoftmax([1, 0, 0, 0])));
  await new Promise((r) => setImmediate(r));
  shadow.close();
  await shadow.idle();
  assert.equal(engine.requests.length, 1);
  assert.deepEqual(await outcomes(metrics), {});
  assert.equal(shadow.sample(SNAPKV, 8, [5]), null);
});

t.test('sampling: a reference that would not fit the window is not sampled; expert offload never is; captures the compared steps only', async () => {
  const shadow = new ShadowFidelity(new ScoringEngine(() => [0, 0, 0, 0]), idleMetrics(), { ...OPTIONS, maxTokens: 8 });
  assert.equal(shadow.captureSteps, 8);
  const prompt = Array.from({ length: 100 }, (_, i) => i);
  // The full model scores prompt + min(max_tokens, maxTokens) tokens: 100 + 8 fits 108, not 107.
  assert.notEqual(shadow.sample(SNAPKV, 50, prompt, 108), null);
  assert.equal(shadow.sample(SNAPKV, 50, prompt, 107), null);
  assert.notEqual(shadow.sample(SNAPKV, 4, prompt, 104), null, 'only the steps compared count');
});

t.test('an expert-offload request is re-scored against the all-resident fp32 reference', async () => {
  const engine = new ScoringEngine(() => [1, 0, 0, 0]);
  const metrics = idleMetrics();
  const edgemoe = parsePolicyFile('name: edgemoe\nkind: expert-offload\nmethod: edgemoe\nparams: {budgetBytes: 65536}\n', '<test>');
  assert.equal(new ShadowFidelity(engine, metrics, { ...OPTIONS, maxTokens: 2 }).sample(edgemoe, 2, [5, 6, 7], 512), null, 'off by default');
  const shadow = new ShadowFidelity(engine, metrics, { ...OPTIONS, maxTokens: 2, expertOffload: true });
  const ticket = shadow.sample(edgemoe, 2, [5, 6, 7], 512);
  assert.ok(ticket);
  ticket.submit([1, 2], Float32Array.from([...logSoftmax([1, 0, 0, 0]), ...logSoftmax([0, 1, 0, 0])]));
  await shadow.idle();
  assert.equal(engine.requests[0]?.reference, 'resident');
  assert.deepEqual(await outcomes(metrics), { 'edgemoe/scored': 1 });
});

t.test('a compressed request is re-scored against its original, uncompressed prompt', async () => {
  const engine = new ScoringEngine(() => [1, 0, 0, 0]);
  const metrics = idleMetrics();
  const shadow = new ShadowFidelity(engine, metrics, { ...OPTIONS, maxTokens: 2 });
  const sc = parsePolicyFile('name: sc\nkind: context-compression\nmethod: selective-context\nparams: {rate: 0.5}\n', '<test>');
  const original = [5, 6, 7, 8, 9, 10];
  const ticket = shadow.sample(sc, 2, original, 512);
  assert.ok(ticket);
  ticket.submit([1, 2], Float32Array.from([...logSoftmax([1, 0, 0, 0]), ...logSoftmax([0, 1, 0, 0])]));
  await shadow.idle();
  assert.deepEqual(engine.requests[0]?.tokens, [...original, 1, 2]);
  assert.equal(engine.requests[0]?.from, original.length - 1);
  assert.deepEqual(await outcomes(metrics), { 'sc/scored': 1 });
});
