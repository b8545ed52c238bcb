import t from 'tap';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  describeMethods,
  describePolicies,
  FULL_POLICY,
  getMethod,
  loadPolicies,
  mergeNeeds,
  METHODS,
  parsePolicyFile,
} from '../../../src/policies/registry.js';
import { PolicyError } from '../../../src/policies/errors.js';

const SHIPPED = [
  'streaming-llm',
  'h2o',
  'snapkv',
  'pyramidkv',
  'tova',
  'knorm',
  'quest',
  'sink-window',
  'kivi',
  'selective-context',
  'llmlingua',
  'longllmlingua',
  'edgemoe',
  'sti',
];

function tempDir(t: { after: (fn: () => void) => void }, files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'capserve-policies-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

function parseError(text: string, file = 'policies/x.yaml'): string {
  try {
    parsePolicyFile(text, file);
  } catch (err) {
    assert.ok(err instanceof PolicyError, `expected a PolicyError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected the policy to be rejected');
}

t.test('every shipped policies/*.yaml loads; every method is configured under its own name; full is built in', async () => {
  const policies = loadPolicies('policies');
  for (const name of SHIPPED) {
    const p = policies.get(name);
    assert.ok(p !== undefined, `policies/${name}.yaml is missing`);
    assert.equal(p.method, name);
    assert.equal(p.source, path.join('policies', `${name}.yaml`));
  }
  const full = policies.get('full');
  assert.ok(full !== undefined);
  assert.equal(full.kind, 'none');
  assert.equal([...policies.keys()][0], 'full');
  const variant = policies.get('snapkv-25');
  assert.ok(variant !== undefined);
  assert.equal(variant.params.budget, 0.25);
  // Defaults are filled from the method's schema.
  assert.deepEqual({ ...variant.params }, { budget: 0.25, observationWindow: 32, kernelSize: 7, pooling: 'max', compressEvery: 0 });
  assert.ok(Object.isFrozen(variant) && Object.isFrozen(variant.params));
  for (const p of policies.values()) assert.match(p.name, /^[a-z0-9]+(-[a-z0-9]+)*$/);
});

t.test('describePolicies gives {name, kind, method, params, cap} as plain JSON', async () => {
  const policies = loadPolicies('policies');
  const data = describePolicies(policies);
  assert.equal(data.length, policies.size);
  const snap = data.find((d) => d.name === 'snapkv');
  assert.deepEqual(JSON.parse(JSON.stringify(snap)), {
    name: 'snapkv',
    kind: 'kv-eviction',
    method: 'snapkv',
    params: { budget: 0.5, observationWindow: 32, kernelSize: 7, pooling: 'max', compressEvery: 0 },
    cap: { favors: ['C', 'P'], costs: 'A' },
  });
  for (const d of data) assert.deepEqual(Object.keys(d), ['name', 'kind', 'method', 'params', 'cap']);
});

t.test('every method: one-line rule, a CAP profile of two favoured axes paying with the third, a closed params schema', async () => {
  assert.deepEqual(
    METHODS.map((m) => m.method)
      .filter((m) => m !== 'none')
      .sort(),
    [...SHIPPED].sort(),
  );
  for (const m of describeMethods()) {
    assert.ok(m.rule.length > 20 && !m.rule.includes('\n'), `${m.method}: rule`);
    const axes = new Set([...m.cap.favors, m.cap.costs]);
    assert.equal(axes.size, 3, `${m.method}: CAP profile ${JSON.stringify(m.cap)}`);
    assert.equal(m.params.additionalProperties, false, `${m.method}: params schema must be closed`);
    for (const [key, schema] of Object.entries(m.params.properties)) {
      assert.equal(typeof schema.description, 'string', `${m.method}.${key} has no description`);
    }
  }
});

t.test('runtime needs: only what the method uses; merged over the active policies', async () => {
  const policies = loadPolicies('policies');
  const needs = (name: string) => policies.get(name)!.needs;
  assert.deepEqual(needs('h2o'), { accumulatedAttention: true, observationWindow: 0, lastQueryAttention: false, query: false });
  assert.deepEqual(needs('snapkv'), { accumulatedAttention: false, observationWindow: 32, lastQueryAttention: false, query: false });
  assert.deepEqual(needs('tova'), { accumulatedAttention: false, observationWindow: 0, lastQueryAttention: true, query: false });
  assert.deepEqual(needs('quest'), { accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: true });
  for (const name of ['full', 'streaming-llm', 'knorm', 'sink-window']) {
    assert.deepEqual(needs(name), { accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: false }, name);
  }
  assert.deepEqual(mergeNeeds([policies.get('h2o')!, policies.get('snapkv')!, policies.get('quest')!]), {
    accumulatedAttention: true,
    observationWindow: 32,
    lastQueryAttention: false,
    query: true,
  });
  assert.equal(policies.get('streaming-llm')!.positions, 'rolling');
  assert.equal(policies.get('snapkv')!.positions, 'original');
  assert.equal(policies.get('quest')!.positions, null);
});

t.test('strict: unknown keys, out-of-range values, wrong types name the file and the JSON path', async () => {
  const base = 'name: x\nkind: kv-eviction\nmethod: snapkv\n';
  assert.match(
    parseError(`${base}params:\n  budget: 1.5\n`, 'policies/snapkv-25.yaml'),
    /^policies\/snapkv-25\.yaml: \/params\/budget: must be a ratio in \(0, 1\] or a token count \(an integer >= 1\), got 1\.5$/,
  );
  assert.match(parseError(`${base}params:\n  budget: 0\n`), /policies\/x\.yaml: \/params\/budget: must be a ratio/);
  assert.match(
    parseError(`${base}params:\n  budgett: 0.5\n`),
    /^policies\/x\.yaml: \/params\/budgett: unknown key \(known: budget, observationWindow, kernelSize, pooling, compressEvery\)$/,
  );
  assert.match(parseError(`${base}params:\n  observationWindow: 0\n`), /^policies\/x\.yaml: \/params\/observationWindow: must be >= 1, got 0$/);
  assert.match(parseError(`${base}params:\n  kernelSize: 2.5\n`), /\/params\/kernelSize: must be integer, got 2\.5/);
  assert.match(parseError(`${base}params:\n  kernelSize: 6\n`), /^policies\/x\.yaml: \/params\/kernelSize: must be odd/);
  assert.match(parseError(`${base}params:\n  pooling: mean\n`), /^policies\/x\.yaml: \/params\/pooling: must be one of "max", "avg", got "mean"$/);
  // No coercion: a quoted number is a string.
  assert.match(parseError(`${base}params:\n  compressEvery: "4"\n`), /\/params\/compressEvery: must be integer, got "4"/);
  assert.match(parseError(`${base}params: {}\nextra: 1\n`), /^policies\/x\.yaml: \/extra: unknown key \(known: name, kind, method, params\)$/);
  assert.match(parseError('kind: kv-eviction\nmethod: snapkv\nparams: {}\n'), /^policies\/x\.yaml: \/name: required$/);
  assert.match(parseError('name: Snap_KV\nkind: kv-eviction\nmethod: snapkv\n'), /^policies\/x\.yaml: \/name: must be kebab-case .*got "Snap_KV"$/);
  assert.match(
    parseError('name: x\nkind: kv-eviction\nmethod: snapkvv\n'),
    /^policies\/x\.yaml: \/method: unknown method "snapkvv" \(known: none, streaming-llm, /,
  );
  assert.match(
    parseError('name: x\nkind: sparse-attention\nmethod: snapkv\n'),
    /^policies\/x\.yaml: \/kind: must be "kv-eviction" for method "snapkv", got "sparse-attention"$/,
  );
  assert.match(parseError('name: x\nkind: eviction\nmethod: snapkv\n'), /^policies\/x\.yaml: \/kind: must be one of "none", "kv-eviction",/);
  assert.match(parseError('name: x\nkind: none\nmethod: none\nparams:\n  budget: 1\n'), /\/params\/budget: unknown key \(no keys allowed\)/);
  assert.match(
    parseError('name: x\nkind: kv-eviction\nmethod: streaming-llm\nparams:\n  budget: 8\n  sinkTokens: 8\n'),
    /\/params\/sinkTokens: must be less than budget/,
  );
  assert.match(
    parseError('name: x\nkind: sparse-attention\nmethod: quest\nparams:\n  budget: 0.25\n  topPages: 4\n'),
    /\/params\/topPages: set exactly one of budget or topPages/,
  );
  assert.match(parseError('name: x\nkind: sparse-attention\nmethod: quest\nparams: {}\n'), /\/params: set exactly one of budget or topPages/);
  // The graph cuts each cache (whole KV blocks of 64) into pages: a page size that does not divide 64 fails at start, not at the first decode.
  assert.match(
    parseError('name: x\nkind: sparse-attention\nmethod: quest\nparams:\n  pageSize: 12\n  budget: 0.25\n'),
    /\/params\/pageSize: must divide the KV block size \(64 entries\).*got 12, use one of 1, 2, 4, 8, 16, 32, 64/,
  );
  assert.doesNotThrow(() => parsePolicyFile('name: x\nkind: sparse-attention\nmethod: quest\nparams:\n  pageSize: 32\n  budget: 0.25\n', 'policies/x.yaml'));
  assert.match(parseError('name: x\nkind: kv-eviction\nmethod: h2o\nparams:\n  recentFraction: 2\n'), /\/params\/recentFraction: must be <= 1, got 2/);
  assert.match(parseError(''), /policies\/x\.yaml: \(root\): must be a mapping/);
  assert.match(parseError('name: x\nname: y\n'), /policies\/x\.yaml: invalid YAML/);
  // Every problem is reported, not just the first.
  const many = parseError(`${base}params:\n  budget: 2.5\n  kernelSize: 0\n  bogus: true\n`);
  assert.equal(many.split('\n').length, 3, many);
});

t.test('loadPolicies: name must match the file, names are unique, every bad file is reported', async (t) => {
  const good = (name: string) => `name: ${name}\nkind: kv-eviction\nmethod: knorm\nparams:\n  budget: 0.5\n`;
  const ok = loadPolicies(tempDir(t, { 'a.yaml': good('a'), 'notes.txt': 'ignored' }));
  assert.deepEqual([...ok.keys()], ['full', 'a']);
  assert.equal(ok.get('full'), FULL_POLICY);

  const dir = tempDir(t, {
    'a.yaml': good('b'),
    'c.yaml': good('c'),
    'c.yml': good('c'),
    'd.yaml': 'name: d\nkind: kv-eviction\nmethod: knorm\nparams:\n  budget: -1\n',
  });
  assert.throws(
    () => loadPolicies(dir),
    (err: unknown) => {
      assert.ok(err instanceof PolicyError);
      assert.match(err.message, new RegExp(`${path.join(dir, 'a.yaml')}: /name: must match the file name "a", got "b"`));
      assert.match(err.message, new RegExp(`${path.join(dir, 'c.yml')}: /name: "c" is already defined by ${path.join(dir, 'c.yaml')}`));
      assert.match(err.message, new RegExp(`${path.join(dir, 'd.yaml')}: /params/budget: must be a ratio`));
      return true;
    },
  );
  assert.throws(() => loadPolicies(path.join(dir, 'missing')), /cannot read the policies directory: ENOENT/);
  assert.throws(() => loadPolicies(tempDir(t, { 'full.yaml': good('full') })), /"full" is reserved/);
});

t.test('getMethod finds every listed method and nothing else', async () => {
  for (const m of METHODS) assert.equal(getMethod(m.method), m);
  assert.equal(getMethod('SnapKV'), undefined);
});
