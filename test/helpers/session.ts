/** In-process access to a compiled model for tests that need logits (no worker, no scheduler). */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvPool } from '../../src/kv/kv-pool.js';
import { kvBytesPerToken, roundToBlock, SequenceKv } from '../../src/kv/sequence-kv.js';
import { compileModel, type QuantBlockSize } from '../../src/model/compile/compile-model.js';
import type { WeightDtype } from '../../src/model/compile/decoder-graph.js';
import { loadCheckpoint, type Checkpoint } from '../../src/model/checkpoint.js';
import type { DecoderStepOutputs, KvDtype } from '../../src/model/step-io.js';
import { DecoderSession } from '../../src/runtime/decoder-session.js';
import { StepInputBuilder } from '../../src/engine/step-inputs.js';

export const TEST_CACHE_DIR = join(tmpdir(), 'capserve-test-cache');

export interface TestModel {
  readonly checkpoint: Checkpoint;
  readonly session: DecoderSession;
  readonly inputs: StepInputBuilder;
  readonly weightBytes: number;
  readonly parameters: number;
  newKv(tokens: number): SequenceKv;
  /** Prefills `ids` into a fresh cache and returns the last position's logits (or all with allLogits). */
  /** One pass over `ids`, or passes of at most `chunk` tokens (as the engine prefills a long prompt); logits of the last pass. */
  prefill(ids: readonly number[], allLogits?: boolean, extraCapacity?: number, chunk?: number): Promise<{ kv: SequenceKv; logits: Float32Array }>;
  close(): Promise<void>;
}

export async function openTestModel(
  dir: string,
  weightDtype: WeightDtype = 'fp32',
  attention = false,
  options: {
    threads?: number;
    cacheDir?: string;
    quantAccuracyLevel?: 0 | 4;
    quantBlockSize?: QuantBlockSize;
    variants?: 'all' | 'plain';
    profilePrefix?: string;
    /** KV cache storage dtype (graph past inputs and the caches newKv makes); default fp32. */
    kvDtype?: KvDtype;
    /** false: decode steps through the general attention core (DecoderSession's leanDecode). */
    leanDecode?: boolean;
  } = {},
): Promise<TestModel> {
  const checkpoint = loadCheckpoint(dir);
  const compiled = compileModel(checkpoint, {
    cacheDir: options.cacheDir ?? TEST_CACHE_DIR,
    weightDtype,
    ...(options.quantAccuracyLevel !== undefined ? { quantAccuracyLevel: options.quantAccuracyLevel } : {}),
    ...(options.variants !== undefined ? { variants: options.variants } : {}),
    ...(options.quantBlockSize !== undefined ? { quantBlockSize: options.quantBlockSize } : {}),
    ...(options.kvDtype !== undefined ? { kvDtype: options.kvDtype } : {}),
  });
  const spec = checkpoint.spec;
  const session = await DecoderSession.create(compiled.decoderPath, spec, {
    threads: options.threads ?? 1,
    variant: attention ? 'stats' : 'plain',
    ...(options.profilePrefix !== undefined ? { profilePrefix: options.profilePrefix } : {}),
    ...(options.leanDecode !== undefined ? { leanDecode: options.leanDecode } : {}),
  });
  let parameters = 0;
  for (const name of checkpoint.weights.names()) parameters += checkpoint.weights.info(name).shape.reduce((a: number, b: number) => a * b, 1);
  const kvDtype = options.kvDtype ?? 'fp32';
  const inputs = new StepInputBuilder(
    spec.numLayers,
    spec.numKvHeads,
    spec.headDim,
    { slidingWindow: spec.slidingWindow, layerWindows: spec.layerWindows },
    kvDtype,
  );
  const pool = new KvPool(8 * 1024 ** 3);
  const shape = { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, dtype: kvDtype };
  const newKv = (tokens: number): SequenceKv => {
    const entries = roundToBlock(tokens);
    if (!pool.tryReserve(entries * kvBytesPerToken(shape))) throw new Error('test KV pool exhausted');
    return new SequenceKv(shape, pool, entries);
  };
  return {
    checkpoint,
    session,
    inputs,
    weightBytes: compiled.weightBytes,
    parameters,
    newKv,
    async prefill(ids, allLogits = false, extraCapacity = 64, chunk = ids.length) {
      const kv = newKv(ids.length + extraCapacity);
      let logits: Float32Array = new Float32Array(0);
      for (let start = 0; start < ids.length; start += chunk) {
        const part = ids.slice(start, start + chunk);
        const out = await session.run(inputs.prefill(kv, part, start, { allLogits }));
        kv.append(
          out.presentKeys,
          out.presentValues,
          0,
          part.length,
          part.map((_, i) => start + i),
        );
        logits = out.logits;
      }
      return { kv, logits };
    },
    close: () => session.release(),
  };
}

export { tempDir } from './temp-dir.js';

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return m;
}

/**
 * One decode step of `kvs` together (one sequence in place, several gathered), token b for
 * sequence b at its next position; each sequence's new entry is appended. Returns the outputs.
 */
export async function decodeStep(m: TestModel, kvs: readonly SequenceKv[], tokens: readonly number[]): Promise<DecoderStepOutputs> {
  const positions = kvs.map((kv) => kv.nextPosition);
  const out = await m.session.run(m.inputs.decode(kvs, tokens, positions));
  kvs.forEach((kv, b) => kv.append(out.presentKeys, out.presentValues, b, 1, [positions[b] ?? 0]));
  return out;
}
