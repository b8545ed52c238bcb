/**
 * Batched decode with the decode group's gathered past kept across steps
 * against the same steps gathering every row's whole cache afresh (what every
 * batched step did before): one model, one process, the two taking turns in
 * blocks (a block's first step not counted: a session's spinning pool after
 * the other's steps). "Afresh" hands the builder the rows rotated by one more
 * each step, so no row holds the sequence it held before and every row is
 * copied whole into the same buffers, as the old gather did; "kept" keeps the
 * order, so only the appended entries are copied. Synthetic caches (no
 * prefill); each step's new entries are appended to the caches as the engine
 * does.
 */
import type { SequenceKv } from '../../src/kv/sequence-kv.js';
import type { TestModel } from '../helpers/session.js';
import { median } from './stats.js';
import { syntheticKv } from './synthetic-kv.js';

export interface BatchGatherPoint {
  readonly batch: number;
  readonly context: number;
  /** Median step (inputs built, graph run, entries appended), gathered past kept. */
  readonly keptMs: number;
  /** The same, every row gathered afresh. */
  readonly freshMs: number;
  /** Median time to build the step's inputs alone, kept and afresh. */
  readonly keptInputsMs: number;
  readonly freshInputsMs: number;
}

const BLOCK = 4;

export async function batchGatherBench(m: TestModel, batch: number, context: number, steps: number): Promise<BatchGatherPoint> {
  const blocks = Math.max(1, Math.ceil(steps / (BLOCK - 1)));
  const total = 2 * blocks * BLOCK + 8;
  const kvs = Array.from({ length: batch }, (_, b) => syntheticKv(m, context + b, total));
  const times = { kept: [] as number[], fresh: [] as number[], keptInputs: [] as number[], freshInputs: [] as number[] };
  let rotation = 0;
  const step = async (mode: 'kept' | 'fresh', counted: boolean): Promise<void> => {
    if (mode === 'fresh') rotation = (rotation % (batch - 1)) + 1;
    const rows: SequenceKv[] = mode === 'kept' ? kvs : kvs.map((_, b) => kvs[(b + rotation) % batch] as SequenceKv);
    const positions = rows.map((kv) => kv.nextPosition);
    const t0 = performance.now();
    const inputs = m.inputs.decode(
      rows,
      rows.map((_, b) => 50 + b),
      positions,
      null,
      mode,
    );
    const t1 = performance.now();
    const out = await m.session.run(inputs);
    rows.forEach((kv, b) => kv.append(out.presentKeys, out.presentValues, b, 1, [positions[b] ?? 0]));
    const t2 = performance.now();
    if (!counted) return;
    times[mode].push(t2 - t0);
    times[mode === 'kept' ? 'keptInputs' : 'freshInputs'].push(t1 - t0);
  };
  // Both groups' buffers exist before the first counted step.
  await step('kept', false);
  await step('fresh', false);
  for (let k = 0; k < blocks; k++) {
    for (const mode of k % 2 === 0 ? (['kept', 'fresh'] as const) : (['fresh', 'kept'] as const)) {
      for (let s = 0; s < BLOCK; s++) await step(mode, s > 0);
    }
  }
  for (const kv of kvs) kv.release();
  return {
    batch,
    context,
    keptMs: median(times.kept),
    freshMs: median(times.fresh),
    keptInputsMs: median(times.keptInputs),
    freshInputsMs: median(times.freshInputs),
  };
}
