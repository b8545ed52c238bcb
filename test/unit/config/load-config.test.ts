import t from 'tap';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, parseOverride } from '../../../src/config/load-config.js';

function tempFile(t: { after: (fn: () => void) => void }, name: string, text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'capserve-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

t.test('defaults: no file gives the documented defaults, deep-frozen', async () => {
  const config = loadConfig();
  assert.equal(config.model.dir, '.cache/models/default');
  assert.equal(config.model.servedModelName, null);
  assert.equal(config.model.chatTemplateFallback, null);
  assert.equal(config.model.contextLength, undefined);
  assert.equal(config.server.host, '127.0.0.1');
  assert.equal(config.server.port, 8000);
  assert.deepEqual(config.server.apiKeys, []);
  assert.equal(config.routing.defaultPolicy, 'full');
  assert.ok(Object.isFrozen(config));
  assert.ok(Object.isFrozen(config.server));
  assert.ok(Object.isFrozen(config.server.apiKeys));
  assert.throws(() => {
    (config.server as { port: number }).port = 1;
  }, TypeError);
});

t.test('config/default.yaml is valid and matches the built-in defaults', async () => {
  const fromFile = loadConfig({ file: path.resolve(process.cwd(), 'config/default.yaml') });
  assert.deepEqual(JSON.parse(JSON.stringify(fromFile)), JSON.parse(JSON.stringify(loadConfig())));
});

t.test('a file sets values and the rest keeps defaults', async (t) => {
  const file = tempFile(t, 'c.yaml', 'server:\n  port: 9001\n  apiKeys: [k1]\nmodel:\n  dir: /models/x\n  contextLength: 1024\n');
  const config = loadConfig({ file });
  assert.equal(config.server.port, 9001);
  assert.deepEqual(config.server.apiKeys, ['k1']);
  assert.equal(config.server.host, '127.0.0.1');
  assert.equal(config.model.dir, '/models/x');
  assert.equal(config.model.contextLength, 1024);
});

t.test('unknown keys are errors naming the file and the JSON path', async (t) => {
  const file = tempFile(t, 'typo.yaml', 'server:\n  maxConcurent: 4\n');
  assert.throws(
    () => loadConfig({ file }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /typo\.yaml/);
      assert.match(err.message, /\$\.server\.maxConcurent: unknown key 'maxConcurent'/);
      return true;
    },
  );
  const top = tempFile(t, 'top.yaml', 'servr: {}\n');
  assert.throws(() => loadConfig({ file: top }), /\$\.servr: unknown key/);
});

t.test('no type coercion: a quoted number is an error, not a number', async (t) => {
  const file = tempFile(t, 'port.yaml', 'server:\n  port: "8080"\n');
  assert.throws(() => loadConfig({ file }), /\$\.server\.port: must be integer/);
});

t.test('enumerations and unions read clearly', async () => {
  assert.throws(() => loadConfig({ overrides: [parseOverride('model.weightDtype=fp16')] }), /\$\.model\.weightDtype: must be one of "fp32", "int8", "int4"/);
  assert.throws(() => loadConfig({ overrides: [parseOverride('model.servedModelName=3')] }), /\$\.model\.servedModelName: must be a string or null/);
  assert.throws(
    () => loadConfig({ overrides: [parseOverride('routing.allowRequestOverride=maybe')] }),
    /\$\.routing\.allowRequestOverride: must be a boolean or array/,
  );
  assert.throws(() => loadConfig({ overrides: [parseOverride('server.port=70000')] }), /\$\.server\.port: must be <= 65535/);
});

t.test('--set overrides a file value by dot path, parsed as YAML', async (t) => {
  const file = tempFile(t, 'c.yaml', 'server:\n  maxConcurrent: 2\n');
  const config = loadConfig({
    file,
    overrides: [parseOverride('server.maxConcurrent=16'), parseOverride('server.apiKeys=[a, b]'), parseOverride('model.servedModelName=tiny')],
  });
  assert.equal(config.server.maxConcurrent, 16);
  assert.deepEqual(config.server.apiKeys, ['a', 'b']);
  assert.equal(config.model.servedModelName, 'tiny');
});

t.test('parseOverride: shape and YAML scalars', async () => {
  assert.deepEqual(parseOverride('a.b.c=16'), { path: ['a', 'b', 'c'], value: 16 });
  assert.deepEqual(parseOverride('a=true'), { path: ['a'], value: true });
  assert.deepEqual(parseOverride('a=null'), { path: ['a'], value: null });
  assert.deepEqual(parseOverride('a=x=y'), { path: ['a'], value: 'x=y' });
  assert.deepEqual(parseOverride('a='), { path: ['a'], value: '' });
  assert.throws(() => parseOverride('novalue'), /PATH=VALUE/);
  assert.throws(() => parseOverride('=3'), /PATH=VALUE/);
  assert.throws(() => parseOverride('a..b=3'), /empty segment/);
});

t.test('--set cannot descend into a scalar', async (t) => {
  const file = tempFile(t, 'c.yaml', 'server:\n  port: 1\n');
  assert.throws(() => loadConfig({ file, overrides: [parseOverride('server.port.x=1')] }), /'server\.port' is not an object/);
  // Without a file the path is created, and validation names the wrong type.
  assert.throws(() => loadConfig({ overrides: [parseOverride('server.port.x=1')] }), /\$\.server\.port: must be integer/);
});

t.test('unreadable, malformed and non-mapping files fail with the file named', async (t) => {
  assert.throws(() => loadConfig({ file: '/nonexistent/capserve.yaml' }), /\/nonexistent\/capserve\.yaml: cannot read config file: ENOENT/);
  const bad = tempFile(t, 'bad.yaml', 'server:\n  port: [1,\n');
  assert.throws(() => loadConfig({ file: bad }), /bad\.yaml: invalid YAML/);
  const list = tempFile(t, 'list.yaml', '- a\n- b\n');
  assert.throws(() => loadConfig({ file: list }), /list\.yaml: \$: the config must be a mapping, got a sequence/);
  const dup = tempFile(t, 'dup.yaml', 'server:\n  port: 1\n  port: 2\n');
  assert.throws(() => loadConfig({ file: dup }), /dup\.yaml: invalid YAML/);
  const empty = tempFile(t, 'empty.yaml', '# nothing\n');
  assert.equal(loadConfig({ file: empty }).server.port, 8000);
});

t.test('all errors are reported at once', async () => {
  assert.throws(
    () => loadConfig({ overrides: [parseOverride('server.port=x'), parseOverride('memory.kvBudgetBytes=0'), parseOverride('engine.extra=1')] }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /\$\.server\.port/);
      assert.match(err.message, /\$\.memory\.kvBudgetBytes: must be >= 1/);
      assert.match(err.message, /\$\.engine\.extra: unknown key/);
      assert.match(err.message, /after --set overrides/);
      return true;
    },
  );
});

t.test('policies, routing and shadow sections: defaults', async () => {
  const config = loadConfig();
  assert.equal(config.policies.dir, 'policies');
  assert.deepEqual(config.routing, { defaultPolicy: 'full', allowRequestOverride: true, rules: [] });
  assert.deepEqual(config.shadow, { sampleRate: 0.05, maxQueued: 4, maxTokens: 64, maxCaptureTokens: 256, expertOffload: false });
});

t.test('routing rules are strict: unknown keys, bad axes and more than two favoured axes are errors with their path', async (t) => {
  const good = tempFile(
    t,
    'routing.yaml',
    [
      'routing:',
      '  defaultPolicy: snapkv-25',
      '  allowRequestOverride: [full, snapkv-25]',
      '  rules:',
      '    - name: long',
      '      match: {minPromptTokens: 4096}',
      '      policy: streaming-llm',
      '    - match: {header: {name: x-tenant, value: acme}, apiKey: k1, favor: [C, P]}',
      '      policy: h2o',
      '',
    ].join('\n'),
  );
  const config = loadConfig({ file: good });
  assert.equal(config.routing.rules.length, 2);
  assert.deepEqual(config.routing.rules[1]?.match.favor, ['C', 'P']);
  assert.ok(Object.isFrozen(config.routing.rules[1]?.match));

  const bad = tempFile(
    t,
    'bad-routing.yaml',
    [
      'routing:',
      '  rules:',
      '    - match: {minPromptToken: 5}',
      '      policy: h2o',
      '    - match: {favor: [C, A, P]}',
      '      policy: h2o',
      '    - match: {favor: [X]}',
      '      policy: h2o',
      '    - match: {}',
      '',
    ].join('\n'),
  );
  assert.throws(
    () => loadConfig({ file: bad }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /\$\.routing\.rules\[0\]\.match\.minPromptToken: unknown key/);
      assert.match(err.message, /\$\.routing\.rules\[1\]\.match\.favor: must NOT have more than 2 items/);
      assert.match(err.message, /\$\.routing\.rules\[2\]\.match\.favor\[0\]: must be one of "C", "A", "P"/);
      assert.match(err.message, /\$\.routing\.rules\[3\]\.policy: required/);
      return true;
    },
  );
});

t.test('--set policies.NAME.params.KEY lands in the policies section; other keys under a policy are errors', async () => {
  const config = loadConfig({ overrides: [parseOverride('policies.edgemoe.params.budgetBytes=65536')] });
  assert.deepEqual((config.policies as unknown as Record<string, unknown>)['edgemoe'], { params: { budgetBytes: 65536 } });
  assert.throws(() => loadConfig({ overrides: [parseOverride('policies.edgemoe.budgetBytes=1')] }), /\$\.policies\.edgemoe\.budgetBytes: unknown key/);
  assert.throws(() => loadConfig({ overrides: [parseOverride('shadow.sampleRate=1.5')] }), /\$\.shadow\.sampleRate: must be <= 1/);
});

t.test('overflow settings (model and rules) and the compression scorer: defaults, and bad values read as one line each', async () => {
  const config = loadConfig();
  assert.equal(config.model.overflow, 'error');
  assert.deepEqual(config.compression, { scorerModelDir: null });
  const set = loadConfig({
    overrides: [
      'model.overflow={mode: shift, keep: 8}',
      'compression.scorerModelDir=models/scorer',
      'routing.rules=[{match: {minPromptTokens: 9}, policy: full, overflow: truncate}]',
    ].map(parseOverride),
  });
  assert.deepEqual(set.model.overflow, { mode: 'shift', keep: 8 });
  assert.equal(set.compression.scorerModelDir, 'models/scorer');
  assert.equal(set.routing.rules[0]?.overflow, 'truncate');
  assert.throws(
    () =>
      loadConfig({
        overrides: ['model.overflow=squeeze', 'routing.rules=[{match: {}, policy: full, overflow: {mode: evict}}]', 'compression.scorer=x'].map(parseOverride),
      }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /\$\.model\.overflow: must be one of "error", "truncate", "shift", or an object \{mode: error\}/);
      assert.match(err.message, /\$\.routing\.rules\[0\]\.overflow: must be one of "error", "truncate", "shift", or an object/);
      assert.match(err.message, /\$\.compression\.scorer: unknown key/);
      assert.equal(err.message.split('\n').filter((l) => l.includes('overflow')).length, 2, 'one line per bad setting');
      return true;
    },
  );
});
