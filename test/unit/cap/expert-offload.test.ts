import t from 'tap';
import assert from 'node:assert/strict';
import { DENSE_MODEL, expertOffloadPolicy, unservableReason, weightElasticPolicy } from '../../../src/cap/expert-offload.js';
import { createRouter, RoutingError } from '../../../src/cap/router.js';
import { ConfigError, loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { FULL_POLICY, parsePolicyFile, type Policy } from '../../../src/policies/registry.js';

const edgemoe = parsePolicyFile('name: edgemoe\nkind: expert-offload\nmethod: edgemoe\nparams: {budgetBytes: 65536}\n', '<test>');
const lean = parsePolicyFile('name: edgemoe-lean\nkind: expert-offload\nmethod: edgemoe\nparams: {budgetBytes: 0, bits: 4}\n', '<test>');
const snapkv = parsePolicyFile('name: snapkv-25\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.25}\n', '<test>');
const POLICIES: ReadonlyMap<string, Policy> = new Map([FULL_POLICY, snapkv, edgemoe, lean].map((p) => [p.name, p]));
const config = (...sets: string[]) => loadConfig({ overrides: sets.map(parseOverride) });

t.test('which expert-offload policy an MoE model loads with: the default policy if it is one, else edgemoe; dense models none', async () => {
  assert.equal(expertOffloadPolicy(config('routing.defaultPolicy=edgemoe-lean'), POLICIES, true), lean);
  assert.equal(expertOffloadPolicy(config(), POLICIES, true), edgemoe);
  assert.equal(expertOffloadPolicy(config('routing.defaultPolicy=edgemoe'), POLICIES, false), null);
  assert.equal(expertOffloadPolicy(config(), new Map([[FULL_POLICY.name, FULL_POLICY]]), true), null, "none loaded: the engine's defaults");
});

t.test('expert-offload policies cannot serve a dense model, nor be swapped per request on an MoE one', async () => {
  assert.equal(unservableReason(snapkv, DENSE_MODEL), null);
  assert.match(unservableReason(edgemoe, DENSE_MODEL) ?? '', /served model is dense/);
  const moe = { moe: true, expertOffloadPolicy: 'edgemoe' };
  assert.equal(unservableReason(edgemoe, moe), null);
  assert.match(unservableReason(lean, moe) ?? '', /runs 'edgemoe'; 'edgemoe-lean' cannot be chosen per request/);
});

t.test('the router: a dense model with an expert-offload default or rule does not start; requests naming one get a 400; favor skips them', async () => {
  const unservable = (p: Policy): string | null => unservableReason(p, DENSE_MODEL);
  assert.throws(
    () => createRouter(config('routing.defaultPolicy=edgemoe', 'routing.rules=[{match: {}, policy: edgemoe-lean}]').routing, POLICIES, { unservable }),
    (err: unknown) =>
      err instanceof ConfigError &&
      /\$\.routing\.defaultPolicy: policy "edgemoe" cannot serve this model: 'edgemoe' offloads the experts of mixture-of-experts models/.test(err.message) &&
      /\$\.routing\.rules\[0\]\.policy: policy "edgemoe-lean" cannot serve this model/.test(err.message),
  );
  const router = createRouter(config('routing.allowRequestOverride=[edgemoe, snapkv-25, full]').routing, POLICIES, { unservable });
  assert.throws(
    () => router.route({ promptTokens: 1, headers: {}, apiKey: null, cap: { policy: 'edgemoe' } }),
    (err: unknown) =>
      err instanceof RoutingError && err.code === 'invalid_request' && err.param === 'cap.policy' && /cannot serve this model/.test(err.message),
  );
  // edgemoe favours C and P and comes first in the allow list, but cannot serve: snapkv-25 does.
  assert.equal(router.route({ promptTokens: 1, headers: {}, apiKey: null, cap: { favor: ['C', 'P'] } }).policy.name, 'snapkv-25');
});

t.test('the router hands a matching rule its overflow setting', async () => {
  const router = createRouter(
    config('routing.rules=[{name: long, match: {minPromptTokens: 10}, policy: snapkv-25, overflow: {mode: truncate, side: middle}}]').routing,
    POLICIES,
  );
  assert.deepEqual(router.route({ promptTokens: 20, headers: {}, apiKey: null, cap: null }).overflow, { mode: 'truncate', side: 'middle' });
  assert.equal(router.route({ promptTokens: 5, headers: {}, apiKey: null, cap: null }).overflow, null);
});

t.test('elastic weights: the default policy when it is weight-elastic (dense models only); not choosable per request otherwise', async () => {
  const sti = parsePolicyFile('name: sti\nkind: weight-elastic\nmethod: sti\nparams: {budgetBytes: 65536}\n', '<test>');
  const sti4 = parsePolicyFile('name: sti-4\nkind: weight-elastic\nmethod: sti\nparams: {bits: 4}\n', '<test>');
  const policies: ReadonlyMap<string, Policy> = new Map([FULL_POLICY, snapkv, sti, sti4].map((p) => [p.name, p]));
  assert.equal(weightElasticPolicy(config('routing.defaultPolicy=sti'), policies, false), sti);
  assert.equal(weightElasticPolicy(config('routing.defaultPolicy=sti'), policies, true), null);
  assert.equal(weightElasticPolicy(config(), policies, false), null, 'only the default turns elastic weights on');
  const running = { moe: false, expertOffloadPolicy: null, weightElasticPolicy: 'sti' };
  assert.equal(unservableReason(sti, running), null);
  assert.equal(unservableReason(snapkv, running), null);
  assert.match(unservableReason(sti4, running) ?? '', /runs 'sti'; 'sti-4' cannot be chosen per request/);
  assert.match(unservableReason(sti, DENSE_MODEL) ?? '', /runs the full-precision weights; 'sti' cannot be chosen per request/);
  assert.match(unservableReason(sti, { moe: true, expertOffloadPolicy: 'edgemoe' }) ?? '', /mixture of experts/);
});
