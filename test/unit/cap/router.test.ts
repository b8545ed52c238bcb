import t from 'tap';
import assert from 'node:assert/strict';
import { checkRouting, createRouter, RoutingError, type RouteInput } from '../../../src/cap/router.js';
import { ConfigError, loadConfig, parseOverride } from '../../../src/config/load-config.js';
import type { Config } from '../../../src/config/schema.js';
import { FULL_POLICY, parsePolicyFile, type Policy } from '../../../src/policies/registry.js';

const yaml = (name: string, kind: string, method: string, params = '{}'): Policy =>
  parsePolicyFile(`name: ${name}\nkind: ${kind}\nmethod: ${method}\nparams: ${params}\n`, `<test>/${name}.yaml`);

// full favours A+C, the eviction policies C+P, quest A+P.
const POLICIES: ReadonlyMap<string, Policy> = new Map(
  [
    FULL_POLICY,
    yaml('snapkv-25', 'kv-eviction', 'snapkv', '{budget: 0.25}'),
    yaml('streaming-llm', 'kv-eviction', 'streaming-llm'),
    yaml('quest', 'sparse-attention', 'quest', '{budget: 0.25}'),
  ].map((p) => [p.name, p]),
);

function routing(...sets: string[]): Config['routing'] {
  return loadConfig({ overrides: sets.map(parseOverride) }).routing;
}

function routingYaml(rules: string, extra: string[] = []): Config['routing'] {
  return routing(`routing.rules=${rules}`, ...extra);
}

const input = (over: Partial<RouteInput> = {}): RouteInput => ({ promptTokens: 10, headers: {}, apiKey: null, cap: null, ...over });

t.test('no request preference, no rules: the default policy', async () => {
  const router = createRouter(routing('routing.defaultPolicy=snapkv-25'), POLICIES);
  assert.deepEqual(router.route(input()), { policy: POLICIES.get('snapkv-25'), by: 'default', rule: null, overflow: null });
  assert.equal(createRouter(routing(), POLICIES).route(input()).policy.name, 'full');
});

t.test('precedence: body cap.policy > x-capserve-policy header > first matching rule > favor > default', async () => {
  const router = createRouter(routingYaml('[{name: any, match: {}, policy: quest}]'), POLICIES);
  const headers = { 'x-capserve-policy': 'streaming-llm' };
  assert.equal(router.route(input({ headers, cap: { policy: 'snapkv-25' } })).policy.name, 'snapkv-25');
  assert.deepEqual(router.route(input({ headers })), { policy: POLICIES.get('streaming-llm'), by: 'request', rule: null, overflow: null });
  assert.deepEqual(router.route(input({ cap: { favor: ['C', 'P'] } })), { policy: POLICIES.get('quest'), by: 'rule', rule: 'any', overflow: null });
  const noRules = createRouter(routing(), POLICIES);
  assert.deepEqual(noRules.route(input({ cap: { favor: ['C', 'P'] } })), { policy: POLICIES.get('snapkv-25'), by: 'favor', rule: null, overflow: null });
  // null and blank mean "not given".
  assert.equal(noRules.route(input({ cap: { policy: null, favor: null }, headers: { 'x-capserve-policy': '  ' } })).by, 'default');
});

t.test('rules: ordered, first match wins; every condition of a rule must hold', async () => {
  const router = createRouter(
    routingYaml(
      '[' +
        [
          '{name: tenant, match: {apiKey: k-acme, header: {name: X-Team, value: search}}, policy: quest}',
          '{name: long, match: {minPromptTokens: 1000}, policy: streaming-llm}',
          '{name: medium, match: {minPromptTokens: 100, maxPromptTokens: 999}, policy: snapkv-25}',
          '{match: {favor: [A, P]}, policy: quest}',
        ].join(', ') +
        ']',
    ),
    POLICIES,
  );
  const pick = (over: Partial<RouteInput>): string | null => {
    const d = router.route(input(over));
    return d.by === 'rule' ? `${d.rule}:${d.policy.name}` : d.by;
  };
  assert.equal(pick({ promptTokens: 1000 }), 'long:streaming-llm');
  assert.equal(pick({ promptTokens: 999 }), 'medium:snapkv-25');
  assert.equal(pick({ promptTokens: 100 }), 'medium:snapkv-25');
  assert.equal(pick({ promptTokens: 99 }), 'default');
  // Both the key and the header (name case-insensitive, value exact) are needed; the tenant rule comes first.
  assert.equal(pick({ promptTokens: 5000, apiKey: 'k-acme', headers: { 'x-team': 'search' } }), 'tenant:quest');
  assert.equal(pick({ promptTokens: 5000, apiKey: 'k-acme', headers: { 'x-team': 'Search' } }), 'long:streaming-llm');
  assert.equal(pick({ promptTokens: 5000, apiKey: 'k-other', headers: { 'x-team': 'search' } }), 'long:streaming-llm');
  assert.equal(pick({ apiKey: 'k-acme', headers: { 'x-team': ['other', 'search'] } }), 'tenant:quest');
  // A favor rule matches requests favouring only axes it lists.
  assert.equal(pick({ cap: { favor: ['P'] } }), 'rules[3]:quest');
  assert.equal(pick({ cap: { favor: ['A', 'P'] } }), 'rules[3]:quest');
  assert.notEqual(pick({ cap: { favor: ['C', 'P'] } }), 'rules[3]:quest');
  assert.notEqual(pick({}), 'rules[3]:quest');
});

t.test('favor without a matching rule: the first allowed policy whose CAP profile favours every requested axis, the default first', async () => {
  const pick = (router: ReturnType<typeof createRouter>, favor: ('C' | 'A' | 'P')[]): string => router.route(input({ cap: { favor } })).policy.name;
  const all = createRouter(routing(), POLICIES);
  assert.equal(pick(all, ['C', 'P']), 'snapkv-25');
  assert.equal(pick(all, ['A', 'P']), 'quest');
  assert.equal(pick(all, ['A', 'C']), 'full');
  assert.equal(pick(all, ['P']), 'snapkv-25');
  assert.equal(pick(all, ['A']), 'full', 'the default wins a tie');
  // A list sets the preference order; a policy outside it is never picked.
  const listed = createRouter(routing('routing.allowRequestOverride=[quest, streaming-llm]'), POLICIES);
  assert.equal(pick(listed, ['C', 'P']), 'streaming-llm');
  assert.equal(pick(listed, ['P']), 'quest');
  assert.equal(pick(listed, ['A', 'C']), 'full', 'nothing allowed favours A+C: the default');
  const closed = createRouter(routing('routing.allowRequestOverride=false'), POLICIES);
  assert.equal(pick(closed, ['C', 'P']), 'full');
});

t.test('a request naming a policy it may not have: RoutingError naming the parameter and what is allowed', async () => {
  const listed = createRouter(routing('routing.allowRequestOverride=[full, snapkv-25]'), POLICIES);
  const expectError = (over: Partial<RouteInput>, code: string, param: string, message: RegExp): void => {
    assert.throws(
      () => listed.route(input(over)),
      (err: unknown) => {
        assert.ok(err instanceof RoutingError);
        assert.equal(err.code, code);
        assert.equal(err.param, param);
        assert.match(err.message, message);
        return true;
      },
    );
  };
  expectError({ cap: { policy: 'quest' } }, 'policy_not_allowed', 'cap.policy', /'quest' may not be requested on this server\. Allowed: full, snapkv-25\./);
  expectError({ headers: { 'x-capserve-policy': 'quest' } }, 'policy_not_allowed', 'x-capserve-policy', /Allowed: full, snapkv-25/);
  expectError({ cap: { policy: 'snapkv-99' } }, 'unknown_policy', 'cap.policy', /Unknown serving policy 'snapkv-99'\. Allowed: full, snapkv-25\./);
  assert.equal(listed.route(input({ cap: { policy: 'snapkv-25' } })).policy.name, 'snapkv-25');
  const closed = createRouter(routing('routing.allowRequestOverride=false'), POLICIES);
  assert.throws(() => closed.route(input({ cap: { policy: 'full' } })), /does not let requests choose a serving policy/);
  assert.deepEqual(closed.allowed, []);
});

t.test('start-up checks: unknown names in the default, the allow list and rules are errors naming where', async () => {
  const config = routing(
    'routing.defaultPolicy=snapkv-30',
    'routing.allowRequestOverride=[full, nope]',
    'routing.rules=[{name: a, match: {}, policy: full}, {name: long, match: {minPromptTokens: 9}, policy: snapkv-50}, {match: {minPromptTokens: 9, maxPromptTokens: 3}, policy: full}]',
  );
  const errors = checkRouting(config, POLICIES);
  assert.deepEqual(errors, [
    '$.routing.defaultPolicy: unknown policy "snapkv-30" (loaded: full, snapkv-25, streaming-llm, quest)',
    '$.routing.allowRequestOverride[1]: unknown policy "nope" (loaded: full, snapkv-25, streaming-llm, quest)',
    '$.routing.rules[1].policy: rule 1 (rule "long") names an unknown policy "snapkv-50" (loaded: full, snapkv-25, streaming-llm, quest)',
    '$.routing.rules[2].match: minPromptTokens (9) > maxPromptTokens (3): rule 2 can never match',
  ]);
  assert.throws(
    () => createRouter(config, POLICIES),
    (err: unknown) =>
      err instanceof ConfigError && err.message.startsWith('invalid routing:\n  $.routing.defaultPolicy') && err.message.includes('rules[1].policy'),
  );
  assert.deepEqual(checkRouting(routing(), POLICIES), []);
});
