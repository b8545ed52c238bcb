/** Shared locations and scratch directories for the model tests. */
import fs from 'node:fs';
import path from 'node:path';

export function sharedDir(): string {
  return process.env.CAPSERVE_SHARED ?? path.resolve(process.cwd(), '../shared');
}

/** A directory under shared/ if it exists, else null (the caller skips with a message). */
export function sharedPath(...parts: string[]): string | null {
  const p = path.join(sharedDir(), ...parts);
  return fs.existsSync(p) ? p : null;
}

export const MISSING_SHARED = `shared test data not found under ${sharedDir()} (set CAPSERVE_SHARED)`;

export { tempDir } from '../../helpers/temp-dir.js';

export function readJson(file: string): unknown {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

export interface GoldenPrompt {
  readonly name: string;
  readonly text: string;
  readonly input_ids: number[];
  readonly greedy_ids: number[];
  readonly greedy_text: string;
  readonly full_text: string;
  readonly first_step_logits: number[];
}

export interface Golden {
  readonly prompts: GoldenPrompt[];
  readonly perplexity_tinystories_first2000: {
    readonly ids: number[];
    readonly mean_nats_per_token: number;
    readonly windows: { start: number; len: number; scored: number; mean_nats: number }[];
  };
}

/** golden.json is our own fixture; its shape is checked loosely and trusted. */
export function loadGolden(dir: string): Golden {
  const g = readJson(path.join(dir, 'golden.json'));
  if (typeof g !== 'object' || g === null || !('prompts' in g) || !Array.isArray(g.prompts)) {
    throw new Error(`${dir}/golden.json has no prompts list`);
  }
  return g as Golden;
}
