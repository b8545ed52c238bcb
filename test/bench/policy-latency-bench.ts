/**
 * Decode latency and KV bytes against context length, in its own process:
 * full attention over the whole cache, eviction at budgets (the cache an
 * eviction policy leaves: budget x context entries), and Quest (the whole cache,
 * a budget of it attended). The cache content is synthetic: latency depends on
 * how many entries are read, not on what they hold. Prints one JSON line.
 */
import { kvBytesPerToken, type SequenceKv } from '../../src/kv/sequence-kv.js';
import { instantiatePolicy } from '../../src/policies/methods.js';
import { parsePolicyFile } from '../../src/policies/registry.js';
import type { PolicyRuntime } from '../../src/policies/runtime.js';
import { openTestModel } from '../helpers/session.js';
import { median } from './stats.js';
import { longContextArgs, syntheticKv } from './synthetic-kv.js';

export interface LatencyPoint {
  readonly context: number;
  readonly entries: number;
  readonly kvBytes: number;
  readonly stepMsP50: number;
}

export interface PolicyLatencyResult {
  readonly model: string;
  readonly series: Readonly<Record<string, LatencyPoint[]>>;
}

async function main(): Promise<void> {
  const { model, contexts, steps, threads, cacheDir } = longContextArgs('1024,4096,16384,32768');
  const m = await openTestModel(model, 'fp32', false, { threads, cacheDir });
  const spec = m.checkpoint.spec;
  const questSession = m.session.variant('quest');
  const perToken = kvBytesPerToken(spec);

  const fill = (entries: number): SequenceKv => syntheticKv(m, entries, 2 * steps + 4);
  const time = async (kv: SequenceKv, quest: PolicyRuntime | null): Promise<number> => {
    const t: number[] = [];
    for (let s = 0; s < steps; s++) {
      const pos = kv.nextPosition;
      let inputs = m.inputs.decode([kv], [100 + s], [pos]);
      if (quest) inputs = { ...inputs, ...quest.groupInputs([{ runtime: quest, kv }]) };
      const t0 = performance.now();
      const out = await (quest ? questSession : m.session).run(inputs);
      t.push(performance.now() - t0);
      kv.append(out.presentKeys, out.presentValues, 0, 1, [pos]);
      quest?.afterPass(kv, { phase: 'decode', contextTokens: kv.maxLength, stats: null });
    }
    return median(t.slice(2));
  };

  const series: Record<string, LatencyPoint[]> = {};
  const add = (name: string, p: LatencyPoint): void => {
    (series[name] ??= []).push(p);
    process.stderr.write(`${name} @${p.context}: ${p.stepMsP50.toFixed(2)} ms, ${p.entries} entries\n`);
  };
  for (const L of contexts) {
    const full = fill(L);
    add('full', { context: L, entries: L, kvBytes: L * perToken, stepMsP50: await time(full, null) });
    for (const r of [0.25]) {
      const qp = parsePolicyFile(`name: quest-b\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, budget: ${r}, denseLayers: 2}\n`, '<bench>');
      const q = instantiatePolicy(qp, spec);
      q.afterPass(full, { phase: 'prefill-end', contextTokens: full.maxLength, stats: null });
      add(`quest ${r * 100}%`, { context: L, entries: full.maxLength, kvBytes: full.maxLength * perToken, stepMsP50: await time(full, q) });
    }
    full.release();
    for (const r of [0.5, 0.25, 0.125]) {
      const n = Math.max(1, Math.floor(L * r));
      const kv = fill(n);
      add(`evict ${r * 100}%`, { context: L, entries: n, kvBytes: n * perToken, stepMsP50: await time(kv, null) });
      kv.release();
    }
  }
  await questSession.release();
  await m.close();
  const result: PolicyLatencyResult = { model, series };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`policy-latency-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
