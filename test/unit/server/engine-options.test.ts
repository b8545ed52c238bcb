import t from 'tap';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../../src/config/config-overrides.js';
import { loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { createModel } from '../../../src/model/create/create-model.js';
import { FULL_POLICY, parsePolicyFile, type Policy } from '../../../src/policies/registry.js';
import { buildApp } from '../../../src/server/app.js';
import { localEngineOptions, readModelFacts, servedModel } from '../../../src/server/engine-options.js';
import { ScriptedEngine } from './scripted-engine.js';

const edgemoe = parsePolicyFile('name: edgemoe\nkind: expert-offload\nmethod: edgemoe\nparams: {budgetBytes: 268435456}\n', '<test>/edgemoe.yaml');
const POLICIES: ReadonlyMap<string, Policy> = new Map([FULL_POLICY, edgemoe].map((p) => [p.name, p]));

t.test('the model directory says dense or MoE before anything loads; MoE models get the expert-offload policy params', async (t) => {
  const root = mkdtempSync(path.join(tmpdir(), 'capserve-engine-options-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const mixtral = (await createModel({ arch: 'mixtral', preset: 'tiny', seed: 1, out: path.join(root, 'mixtral') })).dir;
  const llama = (await createModel({ arch: 'llama', preset: 'tiny', seed: 1, out: path.join(root, 'llama') })).dir;
  assert.deepEqual(readModelFacts(mixtral), { architecture: 'mixtral', moe: true });
  assert.deepEqual(readModelFacts(llama), { architecture: 'llama', moe: false });
  assert.equal(readModelFacts(path.join(root, 'absent')), null);

  // --policy edgemoe --set policies.edgemoe.params.budgetBytes=65536, as the serve command reads them.
  const config = loadConfig({
    overrides: [
      `model.dir=${mixtral}`,
      'routing.defaultPolicy=edgemoe',
      'policies.edgemoe.params.budgetBytes=65536',
      'compression.scorerModelDir=scorers/small',
    ].map(parseOverride),
  });
  const overridden = new Map(POLICIES).set(
    'edgemoe',
    parsePolicyFile('name: edgemoe\nkind: expert-offload\nmethod: edgemoe\nparams: {budgetBytes: 65536}\n', '<test>'),
  );
  const moe = servedModel(config, overridden, readModelFacts(mixtral));
  assert.deepEqual(moe, { moe: true, expertOffloadPolicy: 'edgemoe', weightElasticPolicy: null });
  const options = localEngineOptions(config, overridden, moe, { chatTemplateFallback: null, threads: 1 });
  assert.equal(options.modelDir, mixtral);
  assert.equal(options.expertOffload?.['budgetBytes'], 65536);
  assert.equal(options.scorerModelDir, 'scorers/small');
  assert.equal(options.threads, 1);
  // onnxruntime's threads spin between kernels (its default) unless the operator lets them sleep.
  assert.equal(options.threadSpinning, true);
  const sleeping = loadConfig({ overrides: [`model.dir=${llama}`, 'engine.threadSpinning=false'].map(parseOverride) });
  assert.equal(
    localEngineOptions(sleeping, POLICIES, servedModel(sleeping, POLICIES, readModelFacts(llama)), { chatTemplateFallback: null }).threadSpinning,
    false,
  );

  const dense = servedModel(config, overridden, readModelFacts(llama));
  assert.deepEqual(dense, { moe: false, expertOffloadPolicy: null, weightElasticPolicy: null });
  assert.equal(localEngineOptions(config, overridden, dense, { chatTemplateFallback: null }).expertOffload, undefined);
  assert.equal(localEngineOptions(loadConfig(), POLICIES, dense, { chatTemplateFallback: null }).scorerModelDir, undefined, 'null: the served model scores');
  // --policy sti on a dense model: the engine runs elastic weights with the policy's params.
  const stiConfig = loadConfig({ overrides: [`model.dir=${llama}`, 'routing.defaultPolicy=sti'].map(parseOverride) });
  const withSti = new Map(POLICIES).set('sti', parsePolicyFile('name: sti\nkind: weight-elastic\nmethod: sti\nparams: {budgetBytes: 65536}\n', '<test>'));
  const elastic = servedModel(stiConfig, withSti, readModelFacts(llama));
  assert.deepEqual(elastic, { moe: false, expertOffloadPolicy: null, weightElasticPolicy: 'sti' });
  assert.equal(localEngineOptions(stiConfig, withSti, elastic, { chatTemplateFallback: null }).weightElastic?.['budgetBytes'], 65536);
  assert.equal(servedModel(stiConfig, withSti, readModelFacts(mixtral)).weightElasticPolicy, null);
  // The serve command builds the app before listening: a dense model with --policy edgemoe stops there.
  assert.throws(
    () => buildApp({ engine: new ScriptedEngine(), config, policies: overridden, servedModel: dense }),
    (err: unknown) => err instanceof ConfigError && /served model is dense/.test(err.message),
  );
});
