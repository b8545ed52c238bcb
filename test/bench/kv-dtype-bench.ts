/**
 * Decode cost of the KV cache's storage dtype, in its own process: one decode
 * step at each context length on the fp32-KV graph and on the fp16-KV graph
 * (float16 past inputs cast in the graph), taking turns in blocks of 4 steps
 * (rotating order) so both see the same machine noise; plus KIVI (kivi-8, kivi-4) on the fp32
 * cache, whose per-step cost is the fp32 step plus its afterPass (quantizing
 * what left the residual). Reports medians and same-run ratios against fp32,
 * and bytes per token (allocated; KIVI's packed figure is computed). The cache
 * content is synthetic: latency depends on how many entries are read.
 * Prints one JSON line.
 */
import { kvBytesPerToken, type SequenceKv } from '../../src/kv/sequence-kv.js';
import type { KvDtype } from '../../src/model/step-io.js';
import { instantiatePolicy } from '../../src/policies/methods.js';
import { parsePolicyFile } from '../../src/policies/registry.js';
import type { PolicyRuntime } from '../../src/policies/runtime.js';
import { openTestModel, type TestModel } from '../helpers/session.js';
import { median } from './stats.js';
import { longContextArgs, syntheticKv } from './synthetic-kv.js';

export interface KvDtypePoint {
  readonly context: number;
  /** Median decode step, ms, per series. */
  readonly stepMs: Readonly<Record<string, number>>;
  /** Median of per-round ratios series / fp32 (same round, interleaved). */
  readonly ratioVsFp32: Readonly<Record<string, number>>;
}

export interface KvDtypeResult {
  readonly model: string;
  readonly steps: number;
  /** KV bytes per token: allocated for fp32 and fp16, computed (packed codes and scales) for KIVI. */
  readonly bytesPerToken: Readonly<Record<string, number>>;
  readonly points: KvDtypePoint[];
}

async function main(): Promise<void> {
  const { model, contexts, steps, threads, cacheDir } = longContextArgs('4096,16384,32768');
  const open = (kvDtype: KvDtype): Promise<TestModel> => openTestModel(model, 'fp32', false, { threads, cacheDir, kvDtype });
  const models: Record<KvDtype, TestModel> = { fp32: await open('fp32'), fp16: await open('fp16') };
  const spec = models.fp32.checkpoint.spec;
  const kivi = (bits: number): PolicyRuntime =>
    instantiatePolicy(parsePolicyFile(`name: kivi-${bits}\nkind: kv-quantization\nmethod: kivi\nparams: {bits: ${bits}}\n`, '<bench>'), spec);
  const packed = (bits: number): number => Number(kivi(bits).report().details['packedBytesPerToken']);
  const bytesPerToken = {
    fp32: kvBytesPerToken(spec),
    fp16: kvBytesPerToken({ ...spec, dtype: 'fp16' }),
    'kivi-8': packed(8),
    'kivi-4': packed(4),
  };

  const fill = (m: TestModel, entries: number): SequenceKv => syntheticKv(m, entries, 2 * steps + 4);
  const step = async (m: TestModel, kv: SequenceKv, s: number, runtime: PolicyRuntime | null): Promise<number> => {
    const pos = kv.nextPosition;
    const t0 = performance.now();
    const out = await m.session.run(m.inputs.decode([kv], [100 + s], [pos]));
    kv.append(out.presentKeys, out.presentValues, 0, 1, [pos]);
    runtime?.afterPass(kv, { phase: 'decode', contextTokens: kv.maxLength, stats: null });
    return performance.now() - t0;
  };

  const points: KvDtypePoint[] = [];
  for (const L of contexts) {
    const series: { name: string; model: TestModel; kv: SequenceKv; runtime: PolicyRuntime | null }[] = [
      { name: 'fp32', model: models.fp32, kv: fill(models.fp32, L), runtime: null },
      { name: 'fp16', model: models.fp16, kv: fill(models.fp16, L), runtime: null },
      { name: 'kivi-8', model: models.fp32, kv: fill(models.fp32, L), runtime: kivi(8) },
      { name: 'kivi-4', model: models.fp32, kv: fill(models.fp32, L), runtime: kivi(4) },
    ];
    // KIVI quantizes the whole prompt once at prefill end; decode steps then quantize only what leaves the residual.
    for (const s of series) s.runtime?.afterPass(s.kv, { phase: 'prefill-end', contextTokens: L, stats: null });
    const times: Record<string, number[]> = {};
    const ratios: Record<string, number[]> = {};
    // Blocks of BLOCK steps per series, the order rotating each round; the first step of a block is
    // not counted (it meets the previous session's still-spinning thread pool: taking turns every
    // step, that made fp16 read 1.2-1.6x fp32 where separate processes read 1.01-1.08x).
    const BLOCK = 4;
    for (let round = 0, done = 0; done < steps; round++, done += BLOCK - 1) {
      const block: Record<string, number> = {};
      for (let k = 0; k < series.length; k++) {
        const x = series[(round + k) % series.length];
        if (!x) continue;
        const t: number[] = [];
        for (let b = 0; b < BLOCK; b++) {
          const ms = await step(x.model, x.kv, done + b, x.runtime);
          if (b > 0) t.push(ms);
        }
        block[x.name] = median(t);
      }
      if (round === 0) continue; // warm-up
      for (const [name, ms] of Object.entries(block)) {
        (times[name] ??= []).push(ms);
        (ratios[name] ??= []).push(ms / (block['fp32'] ?? ms));
      }
    }
    for (const s of series) s.kv.release();
    const point: KvDtypePoint = {
      context: L,
      stepMs: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)])),
      ratioVsFp32: Object.fromEntries(Object.entries(ratios).map(([k, v]) => [k, median(v)])),
    };
    points.push(point);
    process.stderr.write(
      `kv dtype @${L}: ${Object.entries(point.ratioVsFp32)
        .map(([k, r]) => `${k} ${r.toFixed(3)}x`)
        .join(', ')} of fp32\n`,
    );
  }
  await models.fp32.close();
  await models.fp16.close();
  const result: KvDtypeResult = { model, steps, bytesPerToken, points };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`kv-dtype-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
