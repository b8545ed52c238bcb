/**
 * The decoder graph's own cost, in its own process, for one weight dtype:
 * - decode and prefill (512 and 1024 tokens) of the served graph (every variant
 *   in one graph, run as plain) against the plain-only graph (the path before
 *   variants shared one session), alternating in blocks of steps so machine load
 *   hits both alike; medians and the same-run ratio;
 * - nodes and kernel time per decode step from onnxruntime's profiler
 *   (enableProfiling JSON): node count, share of time in matrix products, the
 *   ops taking the most time.
 * Prints one JSON line.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { WeightDtype } from '../../src/model/compile/decoder-graph.js';
import { openTestModel, tempDir, type TestModel } from '../helpers/session.js';
import { median } from './stats.js';

export interface StepProfile {
  /** Kernel invocations per decode step (If branches' nodes included, each If counted once more). */
  readonly nodesPerStep: number;
  /** Sum of kernel times per step, ms (an If's own time, which contains its branch's nodes, left out). */
  readonly kernelMsPerStep: number;
  /** The If nodes' time beyond their branches' kernels (subgraph setup), ms per step. */
  readonly ifOverheadMsPerStep: number;
  /** Share of kernel time in MatMul, Gemm, MatMulNBits, FusedMatMul. */
  readonly matmulShare: number;
  /** The five ops with the most kernel time: op, share, nodes per step. */
  readonly topOps: readonly { readonly op: string; readonly share: number; readonly nodes: number }[];
}

export interface GraphBenchResult {
  readonly dtype: WeightDtype;
  readonly decodeMs: { readonly served: number; readonly plainOnly: number };
  /** plainOnly / served decode step time (> 1: the served graph is faster). */
  readonly decodeSpeedup: number;
  readonly prefill: readonly { readonly tokens: number; readonly servedMs: number; readonly plainOnlyMs: number; readonly servedTokensPerSecond: number }[];
  /** One prefill of prefillTokens and the decode steps after it, per graph. */
  readonly profile: {
    readonly prefillTokens: number;
    readonly served: { readonly decode: StepProfile; readonly prefill: StepProfile };
    readonly plainOnly: { readonly decode: StepProfile; readonly prefill: StepProfile };
  } | null;
}

interface ProfileEvent {
  readonly cat?: string;
  readonly name?: string;
  readonly dur?: number;
  readonly ts?: number;
  readonly args?: { readonly op_name?: string };
}

const MATMULS = new Set(['MatMul', 'Gemm', 'MatMulNBits', 'FusedMatMul', 'MatMulInteger', 'DynamicQuantizeMatMul']);

/** Node events of each run (session.run) of a profile, in order. */
export function profileRuns(events: readonly ProfileEvent[]): ProfileEvent[][] {
  const runs: ProfileEvent[][] = [];
  let current: ProfileEvent[] = [];
  for (const e of events) {
    if (e.cat === 'Node' && e.name?.endsWith('_kernel_time') === true) current.push(e);
    else if (e.cat === 'Session' && e.name === 'model_run') {
      runs.push(current);
      current = [];
    }
  }
  return runs;
}

/** Per-step node counts and kernel-time shares over the given runs. */
export function summarizeRuns(decode: readonly (readonly ProfileEvent[])[]): StepProfile {
  if (decode.length === 0) throw new Error('the profile has no runs');
  const byOp = new Map<string, { us: number; nodes: number }>();
  let total = 0;
  let nodes = 0;
  for (const run of decode) {
    for (const e of run) {
      const op = e.args?.op_name ?? '?';
      nodes += 1;
      if (op === 'If') continue;
      const entry = byOp.get(op) ?? { us: 0, nodes: 0 };
      entry.us += e.dur ?? 0;
      entry.nodes += 1;
      byOp.set(op, entry);
      total += e.dur ?? 0;
    }
  }
  const ifOwnUs = decode.reduce((a, run) => a + ifOverheadUs(run), 0);
  let mm = 0;
  for (const [op, e] of byOp) if (MATMULS.has(op)) mm += e.us;
  const topOps = [...byOp.entries()]
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, 5)
    .map(([op, e]) => ({ op, share: e.us / total, nodes: e.nodes / decode.length }));
  return {
    nodesPerStep: nodes / decode.length,
    kernelMsPerStep: total / 1000 / decode.length,
    ifOverheadMsPerStep: ifOwnUs / 1000 / decode.length,
    matmulShare: mm / total,
    topOps,
  };
}

/**
 * The outermost If nodes' time not spent in the kernels of their branches
 * (subgraph setup and output hand-over): a branch's events lie inside its If's interval.
 */
function ifOverheadUs(run: readonly ProfileEvent[]): number {
  const span = (e: ProfileEvent): [number, number] => [e.ts ?? 0, (e.ts ?? 0) + (e.dur ?? 0)];
  const ifs = run.filter((e) => e.args?.op_name === 'If').map(span);
  const outer = ifs.filter(([a, b]) => !ifs.some(([c, d]) => (c < a && d >= b) || (c <= a && d > b)));
  let own = 0;
  for (const [a, b] of outer) {
    own += b - a;
    for (const e of run) {
      if (e.args?.op_name === 'If') continue;
      const [c, d] = span(e);
      if (c >= a && d <= b) own -= d - c;
    }
  }
  return own;
}

/** Profiles one prefill of `prefillTokens` and `steps` decode steps after it. */
async function profileGraph(
  model: string,
  dtype: WeightDtype,
  variants: 'all' | 'plain',
  cacheDir: string,
  threads: number,
  steps: number,
  prefillTokens: number,
): Promise<{ decode: StepProfile; prefill: StepProfile }> {
  const dir = tempDir('graph-profile');
  const prefix = join(dir, 'p');
  const m = await openTestModel(model, dtype, false, { threads, cacheDir, variants, profilePrefix: prefix });
  const V = m.checkpoint.spec.vocabSize;
  const { kv } = await m.prefill(
    Array.from({ length: prefillTokens }, (_, i) => 10 + ((i * 41) % (V - 20))),
    false,
    steps + 8,
  );
  for (let s = 0; s < steps; s++) {
    const out = await m.session.run(m.inputs.decode([kv], [100 + s], [kv.nextPosition]));
    kv.append(out.presentKeys, out.presentValues, 0, 1, [kv.nextPosition]);
  }
  kv.release();
  await m.close();
  const file = readdirSync(dir).find((f) => f.endsWith('.json'));
  if (file === undefined) throw new Error(`onnxruntime wrote no profile under ${dir}`);
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as ProfileEvent[];
  rmSync(dir, { recursive: true, force: true });
  const runs = profileRuns(events);
  return { prefill: summarizeRuns(runs.slice(0, 1)), decode: summarizeRuns(runs.slice(-steps)) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      dtype: { type: 'string', default: 'fp32' },
      steps: { type: 'string', default: '32' },
      prefill: { type: 'string', default: '512,1024' },
      runs: { type: 'string', default: '3' },
      threads: { type: 'string', default: '2' },
      profile: { type: 'boolean', default: true },
      'profile-prefill': { type: 'string', default: '512' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const model = values.model;
  const dtype = values.dtype as WeightDtype;
  const steps = Number(values.steps);
  const threads = Number(values.threads);
  const cacheDir = values['cache-dir'];
  const served = await openTestModel(model, dtype, false, { threads, cacheDir, variants: 'all' });
  const plainOnly = await openTestModel(model, dtype, false, { threads, cacheDir, variants: 'plain' });
  const V = served.checkpoint.spec.vocabSize;
  const prompt = Array.from({ length: 16 }, (_, i) => 10 + ((i * 37) % (V - 20)));

  // Decode, alternating in blocks of BLOCK steps, each graph with its own cache. Not step by step:
  // after a run, a session's thread pool spins for a while, and two sessions taking turns every
  // step spin against each other (the served graph measured 0.25x the plain-only one that way,
  // 1.0x in separate processes). The first step of each block, which meets the other session's
  // spinning threads, is not counted.
  const BLOCK = 8;
  const models: readonly TestModel[] = [served, plainOnly];
  const kvs = await Promise.all(models.map(async (m) => (await m.prefill(prompt, false, 2 * steps + 2 * BLOCK)).kv));
  const stepMs: number[][] = [[], []];
  for (let done = 0; done < steps; done += BLOCK - 1) {
    for (let i = 0; i < 2; i++) {
      const m = models[i];
      const kv = kvs[i];
      if (m === undefined || kv === undefined) throw new Error('unreachable');
      for (let s = 0; s < BLOCK; s++) {
        const t0 = performance.now();
        const out = await m.session.run(m.inputs.decode([kv], [100 + done + s], [kv.nextPosition]));
        kv.append(out.presentKeys, out.presentValues, 0, 1, [kv.nextPosition]);
        if (s > 0) stepMs[i]?.push(performance.now() - t0);
      }
    }
  }
  for (const kv of kvs) kv.release();
  const decodeServed = median(stepMs[0] ?? []);
  const decodePlain = median(stepMs[1] ?? []);

  const prefill: { tokens: number; servedMs: number; plainOnlyMs: number; servedTokensPerSecond: number }[] = [];
  for (const tokens of values.prefill.split(',').map(Number)) {
    const ids = Array.from({ length: tokens }, (_, i) => 10 + ((i * 53) % (V - 20)));
    const ms: number[][] = [[], []];
    for (let r = 0; r < Number(values.runs); r++) {
      for (let i = 0; i < 2; i++) {
        const m = models[i];
        if (m === undefined) throw new Error('unreachable');
        const t0 = performance.now();
        const res = await m.prefill(ids, false, 1);
        ms[i]?.push(performance.now() - t0);
        res.kv.release();
      }
    }
    const servedMs = median(ms[0] ?? []);
    prefill.push({ tokens, servedMs, plainOnlyMs: median(ms[1] ?? []), servedTokensPerSecond: tokens / (servedMs / 1000) });
  }
  await served.close();
  await plainOnly.close();

  const profileTokens = Number(values['profile-prefill']);
  const profile = values.profile
    ? {
        prefillTokens: profileTokens,
        served: await profileGraph(model, dtype, 'all', cacheDir, threads, Math.min(steps, 16), profileTokens),
        plainOnly: await profileGraph(model, dtype, 'plain', cacheDir, threads, Math.min(steps, 16), profileTokens),
      }
    : null;
  const result: GraphBenchResult = {
    dtype,
    decodeMs: { served: decodeServed, plainOnly: decodePlain },
    decodeSpeedup: decodePlain / decodeServed,
    prefill,
    profile,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`graph-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
