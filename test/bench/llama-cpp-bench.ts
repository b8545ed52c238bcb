/**
 * capserve beside llama.cpp on the same weights, in one run: for each weight dtype given a GGUF
 * of the same checkpoint (fp32 = F32, int8 = Q8_0, int4 = Q4_0), llama-bench (the operator's
 * build; llama.cpp is not a dependency) and capserve's batch-1 decode and prefills, taking turns
 * dtype by dtype, `--rounds` times, so the machine's load falls on both alike. Tokens per second
 * of every round and the ratio of medians (capserve / llama.cpp). Prints one JSON line.
 *
 *   node dist/test/bench/llama-cpp-bench.js --model DIR --llama-bench PATH \
 *     --gguf fp32=F32.gguf,int8=Q8_0.gguf,int4=Q4_0.gguf [--rounds 3] [--threads 2] [--prefill 512,1024]
 *
 * The GGUFs come from llama.cpp's own tools (convert_hf_to_gguf.py on DIR, then llama-quantize
 * --pure, which quantizes every tensor as capserve's int8/int4 graphs do).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openTestModel } from '../helpers/session.js';
import { timeDecodeSteps, timePrefills } from './engine-timing.js';
import { comparisonRow, LLAMA_TYPES, llamaFigure, parseGgufList, parseLlamaBenchJsonl, type ComparedTest, type ComparisonRow } from './llama-cpp-compare.js';
import { median } from './stats.js';

export interface LlamaCppBenchResult {
  readonly llamaBench: string;
  readonly llamaBuild: string;
  readonly threads: number;
  readonly rounds: number;
  readonly generatedTokens: number;
  readonly rows: readonly ComparisonRow[];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      'llama-bench': { type: 'string' },
      gguf: { type: 'string' },
      rounds: { type: 'string', default: '3' },
      threads: { type: 'string', default: '2' },
      prefill: { type: 'string', default: '512,1024' },
      steps: { type: 'string', default: '64' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  const llamaBench = values['llama-bench'];
  if (!values.model || !llamaBench || !values.gguf) throw new Error('--model, --llama-bench and --gguf are required');
  const ggufs = parseGgufList(values.gguf);
  for (const [, path] of ggufs) if (!existsSync(path)) throw new Error(`--gguf: ${path} does not exist`);
  const rounds = Number(values.rounds);
  const threads = Number(values.threads);
  const steps = Number(values.steps);
  const lengths = values.prefill.split(',').map(Number);
  const tests: ComparedTest[] = [{ kind: 'decode' }, ...lengths.map((tokens): ComparedTest => ({ kind: 'prefill', tokens }))];
  const capserve = new Map<string, number[]>();
  const llama = new Map<string, number[]>();
  const push = (map: Map<string, number[]>, key: string, value: number): void => {
    map.set(key, [...(map.get(key) ?? []), value]);
  };
  let llamaBuild = 'unknown';
  for (let r = 0; r < rounds; r++) {
    for (const [dtype, gguf] of ggufs) {
      const run = spawnSync(llamaBench, ['-m', gguf, '-t', String(threads), '-p', lengths.join(','), '-n', String(steps), '-r', '2', '-o', 'jsonl'], {
        encoding: 'utf8',
        maxBuffer: 16 * 1024 * 1024,
        timeout: 1_800_000,
      });
      if (run.status !== 0) throw new Error(`llama-bench exited with ${run.status ?? run.signal}: ${run.stderr.slice(-400)}`);
      const results = parseLlamaBenchJsonl(run.stdout);
      llamaBuild = results[0]?.buildCommit ?? llamaBuild;
      for (const test of tests) {
        const v = llamaFigure(results, test);
        if (v === null) throw new Error(`llama-bench printed no result for ${JSON.stringify(test)}`);
        push(llama, `${dtype}/${JSON.stringify(test)}`, v);
      }
      // capserve's turn, in this process: the compiled graph of the same checkpoint, then released.
      const m = await openTestModel(values.model, dtype, false, { threads, cacheDir: values['cache-dir'] });
      const decodeMs = median(await timeDecodeSteps(m, steps));
      const prefillMs = await timePrefills(m, lengths, 2);
      await m.close();
      push(capserve, `${dtype}/${JSON.stringify(tests[0])}`, 1000 / decodeMs);
      lengths.forEach((tokens, i) => push(capserve, `${dtype}/${JSON.stringify({ kind: 'prefill', tokens })}`, tokens / (median(prefillMs[i] ?? []) / 1000)));
      process.stderr.write(`  llama.cpp round ${r + 1}/${rounds}: ${dtype} done\n`);
    }
  }
  const rows = ggufs.flatMap(([dtype]) =>
    tests.map((test) => {
      const key = `${dtype}/${JSON.stringify(test)}`;
      return comparisonRow(dtype, LLAMA_TYPES[dtype] ?? dtype, test, capserve.get(key) ?? [], llama.get(key) ?? []);
    }),
  );
  const result: LlamaCppBenchResult = { llamaBench, llamaBuild, threads, rounds, generatedTokens: steps, rows };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`llama-cpp-bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
