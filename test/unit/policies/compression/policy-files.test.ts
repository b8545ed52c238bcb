import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { getCompressionMethod } from '../../../../src/policies/compression/index.js';
import { validate } from './params.js';

for (const name of ['selective-context', 'llmlingua', 'longllmlingua']) {
  t.test(`policies/${name}.yaml names its method, kind and valid params`, async () => {
    const doc: unknown = YAML.parse(readFileSync(path.join('policies', `${name}.yaml`), 'utf8'));
    assert.ok(typeof doc === 'object' && doc !== null);
    const { name: n, kind, method, params } = doc as Record<string, unknown>;
    assert.equal(n, name);
    assert.equal(kind, 'context-compression');
    const m = getCompressionMethod(String(method));
    assert.ok(m !== undefined, `method ${String(method)} exists`);
    assert.equal(m.kind, kind);
    const r = validate(m.schema, (params ?? {}) as Record<string, unknown>);
    assert.ok(r.ok, JSON.stringify(r.ok ? null : r.errors));
  });
}
