/** Reading llama-bench's JSONL and setting it beside capserve's figures (test/bench/llama-cpp-compare.ts). */
import t from 'tap';
import assert from 'node:assert/strict';
import { comparisonRow, llamaFigure, parseGgufList, parseLlamaBenchJsonl } from '../../bench/llama-cpp-compare.js';

// Two lines as llama-bench (build 80fb11a) prints them with -o jsonl, trimmed to the fields read plus a few.
const JSONL = [
  '{"build_commit": "80fb11a", "build_number": 1, "cpu_info": "AMD EPYC", "n_threads": 2, "type_k": "f16", "n_prompt": 512, "n_gen": 0, "avg_ts": 783.17, "stddev_ts": 8.02}',
  '{"build_commit": "80fb11a", "build_number": 1, "cpu_info": "AMD EPYC", "n_threads": 2, "type_k": "f16", "n_prompt": 1024, "n_gen": 0, "avg_ts": 640.5, "stddev_ts": 3.1}',
  '{"build_commit": "80fb11a", "build_number": 1, "cpu_info": "AMD EPYC", "n_threads": 2, "type_k": "f16", "n_prompt": 0, "n_gen": 64, "avg_ts": 131.0, "stddev_ts": 0.25}',
  '',
].join('\n');

void t.test('parseLlamaBenchJsonl reads each test; figures by prompt length and for generation', async () => {
  const tests = parseLlamaBenchJsonl(JSONL);
  assert.equal(tests.length, 3);
  assert.equal(tests[0]?.buildCommit, '80fb11a');
  assert.equal(llamaFigure(tests, { kind: 'decode' }), 131.0);
  assert.equal(llamaFigure(tests, { kind: 'prefill', tokens: 512 }), 783.17);
  assert.equal(llamaFigure(tests, { kind: 'prefill', tokens: 1024 }), 640.5);
  assert.equal(llamaFigure(tests, { kind: 'prefill', tokens: 2048 }), null);
});

void t.test('parseLlamaBenchJsonl refuses what is not a test line', async () => {
  assert.throws(() => parseLlamaBenchJsonl('| model | size |'), /not JSON/);
  assert.throws(() => parseLlamaBenchJsonl('{"n_prompt": 512}'), /without n_prompt, n_gen and avg_ts/);
});

void t.test('comparisonRow: the ratio of medians, rounds kept in order', async () => {
  const row = comparisonRow('int8', 'Q8_0', { kind: 'prefill', tokens: 512 }, [980, 1092, 1159], [642, 711, 643]);
  assert.equal(row.test, 'prefill 512 tokens');
  assert.deepEqual(row.capserve, [980, 1092, 1159]);
  assert.ok(Math.abs(row.ratio - 1092 / 643) < 1e-12);
  assert.equal(comparisonRow('fp32', 'F32', { kind: 'decode' }, [50, 60], [40, 80]).ratio, 55 / 60);
  assert.throws(() => comparisonRow('int4', 'Q4_0', { kind: 'decode' }, [], [1]), /no rounds/);
});

void t.test('parseGgufList: dtype=path pairs; unknown dtypes and empty paths are errors', async () => {
  assert.deepEqual(parseGgufList('fp32=/a/f32.gguf, int4=/a/q4.gguf'), [
    ['fp32', '/a/f32.gguf'],
    ['int4', '/a/q4.gguf'],
  ]);
  assert.throws(() => parseGgufList('w8a8=/a/x.gguf'), /expected fp32=PATH/);
  assert.throws(() => parseGgufList('int8='), /expected fp32=PATH/);
  assert.throws(() => parseGgufList('/a/x.gguf'), /expected fp32=PATH/);
});
