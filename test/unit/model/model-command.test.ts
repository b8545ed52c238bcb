/**
 * `capserve model create`: `--arch gemma3` is Gemma 3's short name (its model_type is gemma3_text);
 * an unknown architecture is refused naming the supported ones.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runModelCommand } from '../../../src/commands/model-command.js';
import { tempDir } from './fixtures.js';

t.test('model create --arch gemma3 writes a gemma3_text checkpoint', async () => {
  const out = join(tempDir('model-command'), 'g3');
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    await runModelCommand(['create', '--arch', 'gemma3', '--out', out]);
  } finally {
    process.stdout.write = write;
  }
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { model_type: string; architectures: string[] };
  assert.equal(config.model_type, 'gemma3_text');
  assert.deepEqual(config.architectures, ['Gemma3ForCausalLM']);
});

t.test('model create refuses an unknown architecture, naming the supported ones', async () => {
  await assert.rejects(runModelCommand(['create', '--arch', 'gpt5', '--out', tempDir('model-command-bad')]), /--arch must be one of .*gemma3_text.*got gpt5/);
});
