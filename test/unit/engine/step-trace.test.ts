/**
 * CAPSERVE_STEP_TRACE: one JSON line per engine step, with the plan and its times.
 * EngineCore runs on the fake ModelRunner (no onnxruntime, no ../shared).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EngineCore } from '../../../src/engine/engine-core.js';
import { StepTrace, stepTraceFromEnv, type StepTraceRecord } from '../../../src/engine/step-trace.js';
import { FakeRunner, fakeSpec, fakeTokenizer } from '../../helpers/fake-model.js';
import { greedyRequest } from '../../helpers/requests.js';
import { tempDir } from '../../helpers/temp-dir.js';

const records = (path: string): StepTraceRecord[] =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as StepTraceRecord);

void t.test('stepTraceFromEnv: off without the variable or with it empty, a trace to the named file otherwise', async () => {
  assert.equal(stepTraceFromEnv({}), null);
  assert.equal(stepTraceFromEnv({ CAPSERVE_STEP_TRACE: '' }), null);
  assert.equal(stepTraceFromEnv({ CAPSERVE_STEP_TRACE: '/tmp/x.jsonl' })?.path, '/tmp/x.jsonl');
});

void t.test('StepTrace: step time, and the gap since the previous step ended', async () => {
  const path = join(tempDir('step-trace'), 'trace.jsonl');
  const trace = new StepTrace(path);
  const fields = { decodeMs: 3.04, prefillMs: 0, waiting: 1, decodeRows: 2, decodeGroups: 1, freshPrompts: 0, chunkTokens: 0 };
  trace.write(100, 110.5, fields);
  trace.write(112.5, 120, { ...fields, chunkTokens: 16, prefillMs: 4 });
  const [a, b] = records(path);
  assert.deepEqual(a, { t: 100, gapMs: 0, stepMs: 10.5, ...fields, decodeMs: 3 });
  assert.deepEqual(b, { t: 112.5, gapMs: 2, stepMs: 7.5, ...fields, chunkTokens: 16, prefillMs: 4, decodeMs: 3 });
});

void t.test('EngineCore with CAPSERVE_STEP_TRACE writes a line per step: the prompts chunked, then both decoding', async (tt) => {
  const spec = fakeSpec();
  const path = join(tempDir('step-trace-core'), 'trace.jsonl');
  const saved = process.env['CAPSERVE_STEP_TRACE'];
  process.env['CAPSERVE_STEP_TRACE'] = path;
  tt.teardown(() => {
    if (saved === undefined) delete process.env['CAPSERVE_STEP_TRACE'];
    else process.env['CAPSERVE_STEP_TRACE'] = saved;
  });
  const runner = new FakeRunner(spec);
  const core = new EngineCore(runner, () => Promise.reject(new Error('no variants')), spec, fakeTokenizer(spec.vocabSize), {
    maxConcurrent: 1,
    maxQueue: 4,
    kvBudgetBytes: 1 << 30,
    contextLength: 4096,
    prefillChunk: 8,
    variants: [],
  });
  const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
  core.submit(greedyRequest('a', range(2, 12), 3));
  core.submit(greedyRequest('b', range(30, 4), 2));
  let steps = 0;
  while (core.hasWork() && steps < 50) {
    await core.step();
    core.drain();
    steps += 1;
  }
  const lines = records(path);
  assert.equal(lines.length, steps);
  // One at a time (maxConcurrent 1): a's 12 prompt tokens in chunks of 8 and 4 while b waits, then a decodes.
  assert.deepEqual(
    lines.slice(0, 2).map((r) => [r.chunkTokens, r.decodeRows, r.waiting]),
    [
      [8, 0, 1],
      [4, 0, 1],
    ],
  );
  assert.ok(lines.some((r) => r.decodeRows === 1 && r.decodeGroups === 1 && r.decodeMs >= 0));
  assert.equal(lines.at(-1)?.waiting, 0);
  for (const r of lines) {
    assert.ok(r.stepMs >= 0 && r.gapMs >= 0 && r.prefillMs >= 0, JSON.stringify(r));
    assert.ok(r.stepMs + 0.2 >= r.decodeMs + r.prefillMs, JSON.stringify(r));
  }
});
