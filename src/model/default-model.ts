/**
 * The embedded default model. No registry ships LLM weights, so capserve
 * generates its own small Llama (seeded random weights, its own tokenizer and
 * ChatML template) on first start. It serves the full API but says nothing
 * meaningful; point --model at a Hugging Face checkpoint directory for a real one.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createModel } from './create/create-model.js';

export const DEFAULT_MODEL_DIR = '.cache/models/default';

/** Generates the default model into `dir` when it is the default path and absent. */
export async function ensureDefaultModel(dir: string, onProgress?: (message: string) => void): Promise<void> {
  const target = resolve(dir);
  if (target !== resolve(DEFAULT_MODEL_DIR) || existsSync(join(target, 'config.json'))) return;
  onProgress?.(`generating the embedded default model (llama, preset small, seed 0) into ${target}`);
  const tmp = join(dirname(target), `.default-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  await createModel({ arch: 'llama', preset: 'small', seed: 0, out: tmp, ...(onProgress ? { onProgress } : {}) });
  rmSync(target, { recursive: true, force: true });
  renameSync(tmp, target);
  onProgress?.('default model ready');
}
