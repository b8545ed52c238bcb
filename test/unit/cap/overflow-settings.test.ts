import t from 'tap';
import assert from 'node:assert/strict';
import { checkOverflowConfig, overflowPolicyProblem, resolveOverflow } from '../../../src/cap/overflow-settings.js';
import { loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { FULL_POLICY, parsePolicyFile, type Policy } from '../../../src/policies/registry.js';

const POLICIES: ReadonlyMap<string, Policy> = new Map(
  [
    FULL_POLICY,
    parsePolicyFile('name: sc\nkind: context-compression\nmethod: selective-context\nparams: {rate: 0.5}\n', '<test>'),
    parsePolicyFile('name: streaming\nkind: kv-eviction\nmethod: streaming-llm\nparams: {budget: 64}\n', '<test>'),
  ].map((p) => [p.name, p]),
);

t.test('precedence: the request, else the rule, else the model; bare modes get their defaults', async () => {
  assert.deepEqual(resolveOverflow(null, undefined, undefined), { spec: { mode: 'error' }, source: 'model' });
  assert.deepEqual(resolveOverflow(undefined, null, 'truncate'), { spec: { mode: 'truncate', side: 'left' }, source: 'model' });
  assert.deepEqual(resolveOverflow(null, 'shift', 'truncate'), { spec: { mode: 'shift', keep: 'system' }, source: 'rule' });
  assert.deepEqual(resolveOverflow({ mode: 'compress', policy: 'sc' }, 'shift', 'truncate'), { spec: { mode: 'compress', policy: 'sc' }, source: 'request' });
});

t.test('a compress or evict mode must name a loaded policy of its kind', async () => {
  assert.equal(overflowPolicyProblem({ mode: 'compress', policy: 'sc' }, POLICIES), null);
  assert.equal(overflowPolicyProblem({ mode: 'evict', policy: 'streaming' }, POLICIES), null);
  assert.equal(overflowPolicyProblem({ mode: 'truncate', side: 'left' }, POLICIES), null);
  assert.match(overflowPolicyProblem({ mode: 'evict', policy: 'sc' }, POLICIES) ?? '', /needs a kv-eviction policy, but "sc" is context-compression/);
  assert.match(overflowPolicyProblem({ mode: 'compress', policy: 'lingua' }, POLICIES) ?? '', /unknown policy "lingua" \(loaded: full, sc, streaming\)/);
});

t.test('the config: model.overflow defaults to error; every problem is listed with its path', async () => {
  assert.equal(loadConfig().model.overflow, 'error');
  const good = loadConfig({
    overrides: ['model.overflow={mode: compress, policy: sc}', 'routing.rules=[{match: {}, policy: full, overflow: {mode: evict, policy: streaming}}]'].map(
      parseOverride,
    ),
  });
  assert.deepEqual(checkOverflowConfig(good, POLICIES), []);
  const bad = loadConfig({
    overrides: [
      'model.overflow={mode: evict, policy: full}',
      'routing.rules=[{match: {}, policy: full}, {match: {}, policy: full, overflow: {mode: compress, policy: x}}]',
    ].map(parseOverride),
  });
  assert.deepEqual(checkOverflowConfig(bad, POLICIES), [
    '$.model.overflow: overflow mode evict needs a kv-eviction policy, but "full" is none',
    '$.routing.rules[1].overflow: overflow mode compress names an unknown policy "x" (loaded: full, sc, streaming)',
  ]);
});
