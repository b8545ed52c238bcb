/**
 * `npm run bench -- [--quick] [--out DIR]`: runs each benchmark in its own
 * process, the baselines (machine ceilings) in the same invocation, and writes
 * DIR/results.json and DIR/report.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createModel } from '../../src/model/create/create-model.js';
import type { EngineBenchResult } from './engine-bench.js';
import type { MachineInfo } from './machine.js';

const here = dirname(fileURLToPath(import.meta.url));

interface CeilingsResult {
  readonly machine: MachineInfo;
  readonly threads: number;
  readonly ceilings: { readonly readBandwidthGBs: number; readonly gemmGflops: number };
}

function runJson<T>(script: string, args: string[]): T {
  const res = spawnSync(process.execPath, [join(here, script), ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (res.status !== 0) throw new Error(`${script} failed (exit ${res.status}):\n${res.stderr}`);
  const line = res.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as T;
}

const f = (n: number, d = 1): string => n.toFixed(d);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean', default: false }, out: { type: 'string', default: 'bench-out' }, threads: { type: 'string', default: '2' } },
  });
  const out = resolve(values.out);
  mkdirSync(out, { recursive: true });
  const threads = values.threads;
  const preset = values.quick ? 'small' : '135m';
  const modelDir = resolve(`.cache/bench-models/llama-${preset}`);
  if (!existsSync(join(modelDir, 'config.json'))) {
    process.stderr.write(`generating bench model llama/${preset} into ${modelDir}\n`);
    await createModel({ arch: 'llama', preset, seed: 0, out: modelDir });
  }

  const base = runJson<CeilingsResult>('ceilings-bench.js', [threads]);
  const m = base.machine;
  process.stdout.write(`machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, node ${m.node}, onnxruntime ${m.onnxruntime}\n`);
  process.stdout.write(`ceilings (${threads} threads): read bandwidth ${f(base.ceilings.readBandwidthGBs)} GB/s, fp32 GEMM ${f(base.ceilings.gemmGflops)} GFLOP/s\n`);

  const engine: EngineBenchResult[] = [];
  const steps = values.quick ? '24' : '64';
  const prefill = values.quick ? '256' : '1024';
  for (const dtype of ['fp32', 'int8', 'int4']) {
    const r = runJson<EngineBenchResult>('engine-bench.js', ['--model', modelDir, '--dtype', dtype, '--steps', steps, '--prefill', prefill, '--threads', threads]);
    engine.push(r);
    const ceilingTps = (base.ceilings.readBandwidthGBs * 1e9) / r.weightBytes;
    process.stdout.write(
      `${dtype}: decode ${f(r.decodeTokensPerSecond)} tok/s (p50 ${f(r.decodeStepMs.p50, 2)} ms, p99 ${f(r.decodeStepMs.p99, 2)} ms; ` +
        `${f((100 * r.decodeTokensPerSecond) / ceilingTps)}% of the ${f(ceilingTps)} tok/s bandwidth ceiling), ` +
        `prefill ${r.prefillTokens} tok ${f(r.prefillTokensPerSecond)} tok/s (${f(r.prefillGflops)} GFLOP/s, ${f((100 * r.prefillGflops) / base.ceilings.gemmGflops)}% of GEMM peak), ` +
        `batch-8 ${f(r.batch8TokensPerSecond)} tok/s (${f(r.batch8TokensPerSecond / r.decodeTokensPerSecond, 2)}x batch-1), ` +
        `served ${f(r.servedTokensPerSecond)} tok/s, overhead ${f(r.overheadPerTokenMs, 2)} ms/token\n`,
    );
  }
  const fp32 = engine.find((e) => e.dtype === 'fp32');
  const int8 = engine.find((e) => e.dtype === 'int8');
  const results = { date: new Date().toISOString(), quick: values.quick, model: modelDir, preset, base, engine };
  writeFileSync(join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const rows = engine.map((r) => {
    const ceilingTps = (base.ceilings.readBandwidthGBs * 1e9) / r.weightBytes;
    return `| ${r.dtype} | ${f(r.weightBytes / 1e6)} | ${f(r.decodeTokensPerSecond)} | ${f(r.decodeStepMs.p99, 2)} | ${f((100 * r.decodeTokensPerSecond) / ceilingTps)}% | ${f(r.prefillTokensPerSecond)} | ${f((100 * r.prefillGflops) / base.ceilings.gemmGflops)}% | ${f(r.batch8TokensPerSecond)} (${f(r.batch8TokensPerSecond / r.decodeTokensPerSecond, 2)}x) | ${f(r.overheadPerTokenMs, 2)} |`;
  });
  const report = [
    `# capserve engine benchmark`,
    ``,
    `Model: generated llama \`${preset}\` (${fp32 ? f(fp32.parameters / 1e6) : '?'}M parameters). Date: ${results.date}.`,
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, onnxruntime ${m.onnxruntime}; ${threads} threads.`,
    `Ceilings measured in the same run through onnxruntime: read bandwidth ${f(base.ceilings.readBandwidthGBs)} GB/s, fp32 GEMM ${f(base.ceilings.gemmGflops)} GFLOP/s.`,
    ``,
    `| weights | MB | decode tok/s (p50) | decode p99 ms | of bandwidth ceiling | prefill ${prefill} tok/s | of GEMM peak | batch-8 tok/s | overhead ms/token |`,
    `|---|---|---|---|---|---|---|---|---|`,
    ...rows,
    ``,
    fp32 && int8 ? `int8 decode / fp32 decode: ${f(int8.decodeTokensPerSecond / fp32.decodeTokensPerSecond, 2)}x.` : '',
    `Overhead per token = served inter-token p50 (worker, scheduler, sampling, detokenization, messaging) minus the in-process forward p50.`,
    ``,
  ].join('\n');
  writeFileSync(join(out, 'report.md'), report);
  process.stdout.write(`wrote ${join(out, 'report.md')} and results.json\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
