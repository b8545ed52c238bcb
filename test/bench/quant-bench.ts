/**
 * MatMulNBits settings chosen by measurement, in its own process: for each
 * weight dtype (int8, int4), block size and accuracy level, decode steps run
 * in blocks of 8 taking turns with the fp32 model on the same teacher-forced tokens, so each
 * configuration gets its step time (median) and its error against fp32 on the
 * same positions: mean KL(fp32 || quantized) of the next-token distributions,
 * top-1 agreement, max |logit difference|; then prefills of `--prefill` tokens,
 * interleaved the same way (medians of `--runs`). Prints one JSON line.
 */
import { parseArgs } from 'node:util';
import type { QuantBlockSize } from '../../src/model/compile/compile-model.js';
import type { WeightDtype } from '../../src/model/compile/decoder-graph.js';
import type { SequenceKv } from '../../src/kv/sequence-kv.js';
import { openTestModel, type TestModel } from '../helpers/session.js';
import { median } from './stats.js';

export interface QuantConfigResult {
  readonly dtype: WeightDtype;
  readonly blockSize: number;
  readonly accuracyLevel: number;
  readonly weightBytes: number;
  readonly decodeMs: number;
  /** Median time of one prefill of QuantBenchResult.prefillTokens tokens. */
  readonly prefillMs: number;
  /** fp32 time / this configuration's, same run: decode step and prefill (> 1: faster than fp32). */
  readonly decodeSpeedupVsFp32: number;
  readonly prefillSpeedupVsFp32: number;
  readonly klMean: number;
  readonly top1: number;
  readonly maxAbsLogitDiff: number;
}

export interface QuantBenchResult {
  readonly fp32DecodeMs: number;
  readonly prefillTokens: number;
  readonly fp32PrefillMs: number;
  readonly configs: readonly QuantConfigResult[];
}

function logSoftmax(x: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of x) max = Math.max(max, v);
  let sum = 0;
  for (const v of x) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(x, (v) => v - lse);
}

function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if ((x[i] ?? -Infinity) > (x[best] ?? -Infinity)) best = i;
  return best;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      dtypes: { type: 'string', default: 'int8,int4' },
      blocks: { type: 'string', default: '32,64,128' },
      levels: { type: 'string', default: '4' },
      steps: { type: 'string', default: '24' },
      threads: { type: 'string', default: '2' },
      prefill: { type: 'string', default: '512' },
      runs: { type: 'string', default: '2' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const steps = Number(values.steps);
  const threads = Number(values.threads);
  const cacheDir = values['cache-dir'];
  const reference = await openTestModel(values.model, 'fp32', false, { threads, cacheDir });
  const configs: { dtype: WeightDtype; blockSize: QuantBlockSize; accuracyLevel: 0 | 4; model: TestModel }[] = [];
  for (const dtype of values.dtypes.split(',') as WeightDtype[]) {
    for (const block of values.blocks.split(',').map(Number)) {
      if (block !== 16 && block !== 32 && block !== 64 && block !== 128) throw new Error(`block size ${block}: 16, 32, 64 or 128`);
      for (const level of values.levels.split(',').map(Number)) {
        if (level !== 0 && level !== 4) throw new Error(`accuracy level ${level}: 0 or 4`);
        configs.push({
          dtype,
          blockSize: block,
          accuracyLevel: level,
          model: await openTestModel(values.model, dtype, false, { threads, cacheDir, quantBlockSize: block, quantAccuracyLevel: level }),
        });
      }
    }
  }
  const V = reference.checkpoint.spec.vocabSize;
  const prompt = Array.from({ length: 16 }, (_, i) => 10 + ((i * 37) % (V - 20)));
  const forced = Array.from({ length: steps }, (_, i) => 10 + ((i * 61 + 7) % (V - 20)));
  const models = [reference, ...configs.map((c) => c.model)];
  const kvs: SequenceKv[] = [];
  for (const m of models) kvs.push((await m.prefill(prompt, false, steps + 8)).kv);
  const ms: number[][] = models.map(() => []);
  const kl: number[][] = configs.map(() => []);
  const agree = configs.map(() => 0);
  const maxDiff = configs.map(() => 0);
  // Each model decodes a block of BLOCK teacher-forced steps in turn (the first step of a block,
  // which meets the previous session's still-spinning thread pool, is not timed); the logits of
  // every step are compared once all models have run the block.
  const BLOCK = 8;
  for (let s0 = 0; s0 < steps; s0 += BLOCK) {
    const n = Math.min(BLOCK, steps - s0);
    const blockLogits: Float32Array[][] = [];
    for (let i = 0; i < models.length; i++) {
      const m = models[i];
      const kv = kvs[i];
      if (m === undefined || kv === undefined) throw new Error('unreachable');
      const rows: Float32Array[] = [];
      for (let j = 0; j < n; j++) {
        const t0 = performance.now();
        const out = await m.session.run(m.inputs.decode([kv], [forced[s0 + j] ?? 0], [kv.nextPosition]));
        kv.append(out.presentKeys, out.presentValues, 0, 1, [kv.nextPosition]);
        if (j > 0) ms[i]?.push(performance.now() - t0);
        rows.push(out.logits);
      }
      blockLogits.push(rows);
    }
    for (let j = 0; j < n; j++) {
      const ref = blockLogits[0]?.[j];
      if (ref === undefined) throw new Error('unreachable');
      const p = logSoftmax(ref);
      for (let c = 0; c < configs.length; c++) {
        const q = blockLogits[c + 1]?.[j];
        if (q === undefined) throw new Error('unreachable');
        const lq = logSoftmax(q);
        let d = 0;
        let worst = 0;
        for (let v = 0; v < V; v++) {
          const pv = p[v] ?? 0;
          d += Math.exp(pv) * (pv - (lq[v] ?? 0));
          worst = Math.max(worst, Math.abs((ref[v] ?? 0) - (q[v] ?? 0)));
        }
        kl[c]?.push(d);
        if (argmax(ref) === argmax(q)) agree[c] = (agree[c] ?? 0) + 1;
        maxDiff[c] = Math.max(maxDiff[c] ?? 0, worst);
      }
    }
  }
  for (const kv of kvs) kv.release();

  const prefillTokens = Number(values.prefill);
  const prefillIds = Array.from({ length: prefillTokens }, (_, i) => 10 + ((i * 53) % (V - 20)));
  const prefillMs: number[][] = models.map(() => []);
  for (let r = 0; r < Number(values.runs); r++) {
    for (let i = 0; i < models.length; i++) {
      const m = models[r % 2 === 0 ? i : models.length - 1 - i];
      if (m === undefined) throw new Error('unreachable');
      const t0 = performance.now();
      const res = await m.prefill(prefillIds, false, 1);
      prefillMs[r % 2 === 0 ? i : models.length - 1 - i]?.push(performance.now() - t0);
      res.kv.release();
    }
  }
  for (const m of models) await m.close();
  const result: QuantBenchResult = {
    fp32DecodeMs: median(ms[0] ?? []),
    prefillTokens,
    fp32PrefillMs: median(prefillMs[0] ?? []),
    configs: configs.map((c, i) => ({
      dtype: c.dtype,
      blockSize: c.blockSize,
      accuracyLevel: c.accuracyLevel,
      weightBytes: c.model.weightBytes,
      decodeMs: median(ms[i + 1] ?? []),
      prefillMs: median(prefillMs[i + 1] ?? []),
      decodeSpeedupVsFp32: median(ms[0] ?? []) / median(ms[i + 1] ?? []),
      prefillSpeedupVsFp32: median(prefillMs[0] ?? []) / median(prefillMs[i + 1] ?? []),
      klMean: (kl[i] ?? []).reduce((a, b) => a + b, 0) / steps,
      top1: (agree[i] ?? 0) / steps,
      maxAbsLogitDiff: maxDiff[i] ?? 0,
    })),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`quant-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
