/**
 * model.quantBlockSize from the config to the compiled graph: the served engine compiles its
 * int8/int4 weights at the configured MatMulNBits block size (a compile key of its own).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../src/config/config-overrides.js';
import { loadConfig, parseOverride } from '../../src/config/load-config.js';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING } from '../../src/engine/types.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { compileKey } from '../../src/model/compile/compile-model.js';
import { createModel } from '../../src/model/create/create-model.js';
import { FULL_POLICY, type Policy } from '../../src/policies/registry.js';
import { localEngineOptions, readModelFacts, servedModel } from '../../src/server/engine-options.js';

const POLICIES: ReadonlyMap<string, Policy> = new Map([[FULL_POLICY.name, FULL_POLICY]]);

t.test('model.quantBlockSize reaches the worker: the int4 graph is compiled with that block size', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'capserve-engine-options-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const llama = (await createModel({ arch: 'llama', preset: 'tiny', seed: 2, out: path.join(root, 'llama') })).dir;
  const facts = readModelFacts(llama);
  const dense = servedModel(loadConfig(), POLICIES, facts);
  assert.equal(localEngineOptions(loadConfig(), POLICIES, dense, { chatTemplateFallback: null }).quantBlockSize, undefined, 'null: by dtype');
  const config = loadConfig({ overrides: [`model.dir=${llama}`, 'model.weightDtype=int4', 'model.quantBlockSize=64'].map(parseOverride) });
  const options = localEngineOptions(config, POLICIES, dense, { chatTemplateFallback: null, threads: 1, cacheDir: path.join(root, 'cache') });
  assert.equal(options.quantBlockSize, 64);
  assert.throws(() => loadConfig({ overrides: ['model.quantBlockSize=48'].map(parseOverride) }), ConfigError);

  const engine = await createLocalEngine(options);
  t.after(() => engine.close());
  const events = engine.generate({ id: 'q', promptTokens: [1, 2, 3], sampling: { ...DEFAULT_SAMPLING, maxTokens: 2, temperature: 0 }, policy: 'full' });
  let tokens = 0;
  for await (const e of events) if (e.type === 'token') tokens += 1;
  assert.equal(tokens, 2);
  const key = compileKey(loadCheckpoint(llama), 'int4', 4, 'all', 64);
  assert.ok(existsSync(path.join(root, 'cache', key, 'manifest.json')), `compiled at block 64 under ${key}`);
});
