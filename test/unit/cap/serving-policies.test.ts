import t from 'tap';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadServingPolicies } from '../../../src/cap/serving-policies.js';
import { ConfigError, loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { PolicyError } from '../../../src/policies/errors.js';

function policiesDir(t: { after: (fn: () => void) => void }, files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'capserve-policies-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

const SNAPKV = 'name: snapkv-25\nkind: kv-eviction\nmethod: snapkv\nparams:\n  budget: 0.25\n';
const STREAMING = 'name: streaming-llm\nkind: kv-eviction\nmethod: streaming-llm\nparams: {budget: 256}\n';

t.test('loads the directory (full always first) and applies policies.NAME.params overrides, defaults kept', async (t) => {
  const dir = policiesDir(t, { 'snapkv-25.yaml': SNAPKV, 'streaming-llm.yaml': STREAMING });
  const plain = loadServingPolicies(loadConfig({ overrides: [parseOverride(`policies.dir=${dir}`)] }));
  assert.deepEqual([...plain.keys()], ['full', 'snapkv-25', 'streaming-llm']);
  const observation = plain.get('snapkv-25')?.params['observationWindow'];
  assert.equal(typeof observation, 'number');

  const config = loadConfig({
    overrides: [`policies.dir=${dir}`, 'policies.snapkv-25.params.budget=0.4', 'policies.streaming-llm.params.sinkTokens=8'].map(parseOverride),
  });
  const policies = loadServingPolicies(config);
  const snapkv = policies.get('snapkv-25');
  assert.equal(snapkv?.params['budget'], 0.4);
  assert.equal(snapkv?.params['observationWindow'], observation, 'params not overridden keep their file or default value');
  assert.match(snapkv?.source ?? '', /snapkv-25\.yaml with \$\.policies\.snapkv-25\.params overrides$/);
  assert.equal(policies.get('streaming-llm')?.params['sinkTokens'], 8);
  assert.equal(policies.get('streaming-llm')?.params['budget'], 256);
  assert.ok(Object.isFrozen(snapkv?.params));
});

t.test('a relative policies.dir resolves against the working directory', async (t) => {
  const dir = policiesDir(t, { 'snapkv-25.yaml': SNAPKV });
  const policies = loadServingPolicies(loadConfig({ overrides: [parseOverride('policies.dir=.')] }), dir);
  assert.ok(policies.has('snapkv-25'));
});

t.test('overrides are validated against the method schema again; every error names the file and path', async (t) => {
  const dir = policiesDir(t, { 'snapkv-25.yaml': SNAPKV, 'streaming-llm.yaml': STREAMING });
  const config = loadConfig({
    overrides: [
      `policies.dir=${dir}`,
      'policies.snapkv-25.params.budget=-1',
      'policies.streaming-llm.params.sinkTokenz=4',
      'policies.h2o.params.budget=0.5',
    ].map(parseOverride),
  });
  assert.throws(
    () => loadServingPolicies(config),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /snapkv-25\.yaml with \$\.policies\.snapkv-25\.params overrides: \/params\/budget/);
      assert.match(err.message, /streaming-llm\.yaml with \$\.policies\.streaming-llm\.params overrides: \/params.*sinkTokenz/);
      assert.match(err.message, /\$\.policies\.h2o: no policy named "h2o" is loaded from .* \(loaded: full, snapkv-25, streaming-llm\)/);
      return true;
    },
  );
});

t.test('a bad policy file stops loading with the file and JSON path named', async (t) => {
  const dir = policiesDir(t, { 'snapkv-25.yaml': SNAPKV.replace('budget: 0.25', 'budget: 0.25\n  windw: 3') });
  assert.throws(
    () => loadServingPolicies(loadConfig({ overrides: [parseOverride(`policies.dir=${dir}`)] })),
    (err: unknown) => err instanceof PolicyError && err.message.includes(`${path.join(dir, 'snapkv-25.yaml')}: /params`) && err.message.includes('windw'),
  );
  assert.throws(
    () => loadServingPolicies(loadConfig({ overrides: [parseOverride('policies.dir=/nonexistent/policies')] })),
    /\/nonexistent\/policies: cannot read the policies directory: ENOENT/,
  );
});
