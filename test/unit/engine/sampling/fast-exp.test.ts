import t from 'tap';
import assert from 'node:assert/strict';
import { expNonPositive } from '../../../../src/engine/sampling/fast-exp.js';
import { Xoshiro128 } from '../../../../src/engine/sampling/rng.js';

t.test('expNonPositive matches Math.exp to 1e-12 relative over the whole range', async () => {
  assert.equal(expNonPositive(0), 1);
  assert.equal(expNonPositive(-Infinity), 0);
  assert.equal(expNonPositive(-746), 0);
  assert.ok(Number.isNaN(expNonPositive(Number.NaN)));
  const rng = Xoshiro128.fromSeed(5);
  const points = [-1e-300, -1e-9, -Math.LN2 / 64, -Math.LN2, -1, -20, -87.3, -700, -708, ...Array.from({ length: 200_000 }, () => -rng.nextFloat() * 708)];
  for (let i = 0; i < 2000; i++) points.push(-rng.nextFloat() * 0.05);
  for (const x of points) {
    const want = Math.exp(x);
    const rel = Math.abs(expNonPositive(x) - want) / want;
    assert.ok(rel < 1e-12, `x=${x}: relative error ${rel}`);
  }
  // Subnormal results keep absolute accuracy.
  for (const x of [-710, -730, -744]) assert.ok(Math.abs(expNonPositive(x) - Math.exp(x)) < 1e-320, `x=${x}`);
});
