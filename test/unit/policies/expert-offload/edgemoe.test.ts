import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import t from 'tap';
import YAML from 'yaml';
import { EDGEMOE_METHOD, EDGEMOE_DEFAULTS, resolveEdgeMoe } from '../../../../src/policies/expert-offload/edgemoe.js';
import { parseEdgeMoeParams } from '../../../../src/engine/moe-runner-factory.js';

t.test('edgemoe params: defaults filled, bits=32 pins fp32, adaptBytes 0 means the budget', async () => {
  assert.deepEqual(parseEdgeMoeParams(undefined), EDGEMOE_DEFAULTS);
  const p = parseEdgeMoeParams({ budgetBytes: 65536, bits: 32 });
  const c = resolveEdgeMoe(p);
  assert.equal(c.fixedBits, 32);
  assert.equal(c.budgetBytes, 65536);
  assert.equal(c.adaptBytes, 65536);
  assert.equal(resolveEdgeMoe(parseEdgeMoeParams({})).fixedBits, null);
});

t.test('edgemoe params: unknown keys and bad values are errors naming the field', async () => {
  assert.throws(() => parseEdgeMoeParams({ budget: 1 }), /edgemoe params/);
  assert.throws(() => parseEdgeMoeParams({ bits: 3 }), /\/bits/);
  assert.throws(() => parseEdgeMoeParams({ budgetBytes: -1 }), /\/budgetBytes/);
  assert.throws(() => parseEdgeMoeParams({ cachePolicy: 'fifo' }), /\/cachePolicy/);
  assert.deepEqual(
    EDGEMOE_METHOD.check({ ...EDGEMOE_DEFAULTS, bitsChoices: [4] }).map((i) => i.path),
    ['/bitsChoices'],
  );
  assert.deepEqual(EDGEMOE_METHOD.check(EDGEMOE_DEFAULTS), []);
});

t.test('policies/edgemoe.yaml is a valid edgemoe policy', async () => {
  const doc = YAML.parse(readFileSync('policies/edgemoe.yaml', 'utf8')) as { name: string; kind: string; method: string; params: unknown };
  assert.equal(doc.name, 'edgemoe');
  assert.equal(doc.kind, EDGEMOE_METHOD.kind);
  assert.equal(doc.method, EDGEMOE_METHOD.method);
  assert.deepEqual(parseEdgeMoeParams(doc.params), EDGEMOE_DEFAULTS);
  assert.deepEqual([...EDGEMOE_METHOD.cap.favors], ['C', 'P']);
});
