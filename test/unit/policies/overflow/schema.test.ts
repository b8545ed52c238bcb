import assert from 'node:assert/strict';
import t from 'tap';
import { Type } from '@sinclair/typebox';
import { OverflowSchema } from '../../../../src/policies/overflow/index.js';
import { validate } from '../compression/params.js';

t.test('overflow setting schema: bare modes and objects; unknown keys, modes and bad names rejected', async () => {
  // As a config or request schema embeds it: under a property of a closed object.
  const wrapped = Type.Object({ v: OverflowSchema }, { additionalProperties: false });
  const ok = (value: unknown): boolean => validate(wrapped, { v: value }).ok;
  for (const v of [
    'error',
    'truncate',
    'shift',
    { mode: 'error' },
    { mode: 'truncate' },
    { mode: 'truncate', side: 'middle' },
    { mode: 'shift', keep: 32 },
    { mode: 'shift', keep: 'system' },
    { mode: 'compress', policy: 'selective-context' },
    { mode: 'evict', policy: 'snapkv-25' },
  ]) {
    assert.equal(ok(v), true, JSON.stringify(v));
  }
  for (const v of [
    'compress',
    'evict',
    'drop',
    { mode: 'truncate', side: 'right' },
    { mode: 'shift', keep: -1 },
    { mode: 'compress' },
    { mode: 'compress', policy: 'Bad Name' },
    { mode: 'error', extra: 1 },
    3,
  ]) {
    assert.equal(ok(v), false, JSON.stringify(v));
  }
});
