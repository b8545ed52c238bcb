import t from 'tap';
import assert from 'node:assert/strict';
import { resolveBudget } from '../../../src/policies/budget.js';
import { PolicyError } from '../../../src/policies/errors.js';

t.test('ratio budgets resolve against the length, rounded down, at least one entry', async () => {
  assert.equal(resolveBudget(0.25, 100), 25);
  assert.equal(resolveBudget(0.29, 100), 29); // 0.29 * 100 is 28.999999999999996 in floating point
  assert.equal(resolveBudget(0.125, 1000), 125);
  assert.equal(resolveBudget(0.5, 7), 3);
  assert.equal(resolveBudget(0.01, 10), 1);
  assert.equal(resolveBudget(1, 1234), 1234);
  assert.equal(resolveBudget(0.5, 0), 0);
});

t.test('token-count budgets are capped at the length; 1 reads as the ratio 1', async () => {
  assert.equal(resolveBudget(256, 1000), 256);
  assert.equal(resolveBudget(256, 100), 100);
  assert.equal(resolveBudget(2, 100), 2);
  assert.equal(resolveBudget(1, 100), 100);
});

t.test('invalid budgets and lengths are errors', async () => {
  assert.throws(() => resolveBudget(0, 10), PolicyError);
  assert.throws(() => resolveBudget(-0.5, 10), PolicyError);
  assert.throws(() => resolveBudget(1.5, 10), /budget must be a ratio in \(0, 1\] or a token count/);
  assert.throws(() => resolveBudget(Number.NaN, 10), PolicyError);
  assert.throws(() => resolveBudget(0.5, -1), /length must be an integer >= 0/);
});
