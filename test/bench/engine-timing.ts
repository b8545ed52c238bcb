/**
 * Batch-1 decode steps and whole prefills timed on a model opened in process (the compiled
 * graph, no worker): what engine-bench reports, and what llama-cpp-bench sets beside llama.cpp.
 */
import { DEFAULT_PREFILL_CHUNK } from '../../src/engine/local-engine.js';
import type { TestModel } from '../helpers/session.js';

/** `steps` batch-1 decode steps after a 16-token prompt: each step's ms (inputs, run, cache append). */
export async function timeDecodeSteps(m: TestModel, steps: number): Promise<number[]> {
  const V = m.checkpoint.spec.vocabSize;
  const prompt = Array.from({ length: 16 }, (_, i) => 10 + ((i * 37) % (V - 20)));
  const { kv } = await m.prefill(prompt, false, steps + 8);
  const stepMs: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    const out = await m.session.run(m.inputs.decode([kv], [100 + s], [kv.nextPosition]));
    kv.append(out.presentKeys, out.presentValues, 0, 1, [kv.nextPosition]);
    stepMs.push(performance.now() - t0);
  }
  kv.release();
  return stepMs;
}

/**
 * Prefills of each length (in passes of at most the engine's prefill chunk, as the server runs
 * them), the lengths taking turns `rounds` times: each length's ms per round.
 */
export async function timePrefills(m: TestModel, lengths: readonly number[], rounds: number): Promise<number[][]> {
  const V = m.checkpoint.spec.vocabSize;
  const prompts = lengths.map((len) => Array.from({ length: len }, (_, i) => 10 + ((i * 53) % (V - 20))));
  const runs: number[][] = lengths.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (const [i, ids] of prompts.entries()) {
      const t0 = performance.now();
      const res = await m.prefill(ids, false, 1, DEFAULT_PREFILL_CHUNK);
      runs[i]?.push(performance.now() - t0);
      res.kv.release();
    }
  }
  return runs;
}
