import test from 'node:test';
import assert from 'node:assert/strict';
import { allowed, maskRow, maskRows, sinkWindowParams } from '../../../../src/policies/sparse-attention/sink-window.js';
import { loadPolicies } from '../../../../src/policies/registry.js';

const params = { sinkTokens: 2, windowTokens: 3 };

test('sink-window: a query sees the sinks and its recent window, causally', () => {
  const keys = Int32Array.from({ length: 12 }, (_, i) => i);
  assert.deepEqual([...maskRow(9, keys, params)], [1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0]);
  assert.deepEqual([...maskRow(3, keys, params)], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...maskRow(0, keys, params)], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...maskRow(9, keys, { sinkTokens: 0, windowTokens: 1 })], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
});

test('sink-window: additive rows for a prefill chunk agree with the rule (0 allowed, -Infinity blocked)', () => {
  // A chunk of 5 queries at positions 20..24 over 20 cached entries and the chunk itself.
  const queries = Int32Array.from({ length: 5 }, (_, i) => 20 + i);
  const keys = Int32Array.from({ length: 25 }, (_, i) => i);
  const rows = maskRows(queries, keys, params);
  assert.equal(rows.length, 5 * 25);
  for (let i = 0; i < 5; i++) {
    for (let j = 0; j < 25; j++) {
      const v = rows[i * 25 + j];
      assert.equal(v, allowed(queries[i]!, keys[j]!, params) ? 0 : Number.NEGATIVE_INFINITY, `q ${queries[i]} k ${j}`);
    }
  }
  // Every row keeps exactly sinks + window entries.
  for (let i = 0; i < 5; i++) assert.equal(rows.subarray(i * 25, (i + 1) * 25).filter((v) => v === 0).length, 5);
  // A window as long as the context is plain causal attention.
  const dense = maskRows(queries, keys, { sinkTokens: 0, windowTokens: 1000 });
  for (let i = 0; i < 5; i++) for (let j = 0; j < 25; j++) assert.equal(dense[i * 25 + j], j <= 20 + i ? 0 : Number.NEGATIVE_INFINITY);
});

test('the shipped sink-window policy: 4 sinks, a 1024-token window', () => {
  const p = sinkWindowParams(loadPolicies('policies').get('sink-window')!);
  assert.deepEqual({ ...p }, { sinkTokens: 4, windowTokens: 1024 });
  assert.equal(allowed(5000, 3, p), true);
  assert.equal(allowed(5000, 4, p), false);
  assert.equal(allowed(5000, 3977, p), true);
  assert.equal(allowed(5000, 3976, p), false);
});
