/** Shared setup for the MoE tests: a generated MoE checkpoint compiled once, runners over it, and a KV cache per sequence. */
import { join } from 'node:path';
import { StepInputBuilder } from '../../src/engine/step-inputs.js';
import { KvPool } from '../../src/kv/kv-pool.js';
import { kvBytesPerToken, roundToBlock, SequenceKv } from '../../src/kv/sequence-kv.js';
import { loadCheckpoint, type Checkpoint } from '../../src/model/checkpoint.js';
import { compileModel, type CompiledModel } from '../../src/model/compile/compile-model.js';
import type { WeightDtype } from '../../src/model/compile/decoder-graph.js';
import { createModel } from '../../src/model/create/create-model.js';
import type { Preset } from '../../src/model/create/presets.js';
import type { Architecture } from '../../src/model/spec.js';
import { MoeRunner, type MoeRunnerOptions } from '../../src/runtime/moe-runner.js';
import type { ModelRunner } from '../../src/runtime/model-runner.js';
import { tempDir } from '../helpers/session.js';

export interface MoeFixture {
  readonly checkpoint: Checkpoint;
  readonly compiled: CompiledModel;
  readonly inputs: StepInputBuilder;
  newKv(tokens: number): SequenceKv;
  open(options?: Partial<MoeRunnerOptions>): Promise<MoeRunner>;
}

export async function moeFixture(
  arch: Architecture,
  seed: number,
  options: { preset?: Preset; weightDtype?: WeightDtype; overrides?: Record<string, unknown>; quantAccuracyLevel?: 0 | 4 } = {},
): Promise<MoeFixture> {
  const root = tempDir(`moe-${arch}`);
  const { dir } = await createModel({
    arch,
    preset: options.preset ?? 'tiny',
    seed,
    out: join(root, 'model'),
    ...(options.overrides ? { configOverrides: options.overrides } : {}),
  });
  const checkpoint = loadCheckpoint(dir);
  const compiled = compileModel(checkpoint, {
    cacheDir: join(root, 'compiled'),
    weightDtype: options.weightDtype ?? 'fp32',
    ...(options.quantAccuracyLevel !== undefined ? { quantAccuracyLevel: options.quantAccuracyLevel } : {}),
  });
  const spec = checkpoint.spec;
  const pool = new KvPool(1024 ** 3);
  const shape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim };
  return {
    checkpoint,
    compiled,
    inputs: new StepInputBuilder(spec.numLayers, spec.numKvHeads, spec.headDim, { slidingWindow: spec.slidingWindow, layerWindows: spec.layerWindows }),
    newKv: (wanted) => {
      const tokens = roundToBlock(wanted);
      if (!pool.tryReserve(tokens * kvBytesPerToken(shape))) throw new Error('test KV pool exhausted');
      return new SequenceKv(shape, pool, tokens);
    },
    open: (o = {}) => MoeRunner.open(compiled.dir, spec, { threads: 1, budgetBytes: 1 << 30, cachePolicy: 'lru', prefetch: true, ...o }),
  };
}

/** Prefill `ids`, then decode `steps` given tokens; returns the logits rows [prompt positions..., decode steps...]. */
export async function runSequence(
  f: MoeFixture,
  runner: ModelRunner,
  ids: readonly number[],
  decodeTokens: readonly number[],
  afterStep?: () => void,
): Promise<Float32Array[]> {
  const V = f.checkpoint.spec.vocabSize;
  const kv = f.newKv(ids.length + decodeTokens.length + 1);
  try {
    const out = await runner.run(f.inputs.prefill(kv, ids, 0, { allLogits: true }));
    kv.append(
      out.presentKeys,
      out.presentValues,
      0,
      ids.length,
      ids.map((_, i) => i),
    );
    afterStep?.();
    const rows: Float32Array[] = ids.map((_, t) => out.logits.slice(t * V, (t + 1) * V));
    for (const tok of decodeTokens) {
      const pos = kv.nextPosition;
      const o = await runner.run(f.inputs.decode([kv], [tok], [pos]));
      kv.append(o.presentKeys, o.presentValues, 0, 1, [pos]);
      afterStep?.();
      rows.push(o.logits.slice());
    }
    return rows;
  } finally {
    kv.release();
  }
}

export function promptIds(length: number, vocab: number, salt = 0): number[] {
  return Array.from({ length }, (_, i) => 3 + ((i * 97 + 11 + salt * 31) % (vocab - 3)));
}
