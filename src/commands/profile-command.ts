/**
 * `capserve model profile DIR [--text FILE] [--tokens N] [--cache-dir DIR]`:
 * compiles the model's STI shards if needed and measures every shard's
 * importance at 8/4/2 bits (KL against full precision on calibration text,
 * engine/sti-profile.ts), saving the profile with the compiled shards, where
 * `--policy sti` (bits: adaptive) reads it.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { profileModel } from '../engine/sti-runner-factory.js';
import { CALIBRATION_TEXT } from '../policies/expert-offload/calibration-text.js';
import { loadCheckpoint } from '../model/checkpoint.js';

export async function runProfileCommand(args: string[], progress: (m: string) => void): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    options: { text: { type: 'string' }, tokens: { type: 'string', default: '256' }, 'cache-dir': { type: 'string', default: '.cache/compiled' } },
    allowPositionals: true,
    strict: true,
  });
  const dir = positionals[0];
  if (!dir) throw new Error('model profile needs a model directory');
  const tokens = Number(values.tokens);
  if (!Number.isSafeInteger(tokens) || tokens < 2 || tokens > 8192) throw new Error(`--tokens must be an integer from 2 to 8192, got ${values.tokens}`);
  const cp = loadCheckpoint(dir);
  if (cp.spec.moe !== undefined)
    throw new Error(`${dir}: profile measures the shards of dense models; this is a mixture of experts (edgemoe profiles its experts when it loads)`);
  const text = values.text === undefined ? CALIBRATION_TEXT : readFileSync(values.text, 'utf8');
  const encoded = cp.tokenizer.encode(text, { addSpecialTokens: true });
  if (encoded.length < 2) throw new Error(`${values.text ?? 'the built-in calibration text'} encodes to fewer than 2 tokens`);
  const ids = Array.from({ length: Math.min(tokens, cp.spec.maxPositionEmbeddings) }, (_, i) => encoded[i % encoded.length] ?? 0);
  const profile = await profileModel(cp, ids, values.text ?? 'built-in', values['cache-dir'], progress);
  const mean = (b: 8 | 4 | 2): number => profile.entries.reduce((a, e) => a + (e.cost[b] ?? 0), 0) / Math.max(1, profile.entries.length);
  process.stdout.write(
    `${JSON.stringify({ dir: profile.dir, shards: profile.entries.length, tokens: profile.tokens, seconds: Number(profile.seconds.toFixed(1)), meanKl: { 8: mean(8), 4: mean(4), 2: mean(2) } })}\n`,
  );
}
