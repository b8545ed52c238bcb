import t from 'tap';
import assert from 'node:assert/strict';
import { fidelity } from '../../../src/cap/fidelity.js';

const logSoftmax = (probs: number[]): number[] => probs.map((p) => Math.log(p));

t.test('identical rows: KL 0 and full top-1 agreement', async () => {
  const rows = Float32Array.from([...logSoftmax([0.7, 0.2, 0.1]), ...logSoftmax([0.1, 0.1, 0.8])]);
  assert.deepEqual(fidelity(rows, rows.slice(), 3, 2), { kl: 0, top1: 1, steps: 2 });
});

t.test('KL(full || policy) by hand, averaged over steps; top-1 counts argmax agreement', async () => {
  const p1 = [0.5, 0.25, 0.25];
  const q1 = [0.25, 0.5, 0.25]; // argmax differs
  const p2 = [0.8, 0.1, 0.1];
  const q2 = [0.6, 0.2, 0.2]; // argmax agrees
  const kl = (p: number[], q: number[]): number => p.reduce((s, pi, i) => s + pi * Math.log(pi / (q[i] as number)), 0);
  const full = Float32Array.from([...logSoftmax(p1), ...logSoftmax(p2)]);
  const policy = Float32Array.from([...logSoftmax(q1), ...logSoftmax(q2)]);
  const f = fidelity(full, policy, 3, 2);
  assert.ok(Math.abs(f.kl - (kl(p1, q1) + kl(p2, q2)) / 2) < 1e-6, String(f.kl));
  assert.equal(f.top1, 0.5);
  // Direction matters: KL is not symmetric.
  assert.ok(Math.abs(fidelity(policy, full, 3, 2).kl - (kl(q1, p1) + kl(q2, p2)) / 2) < 1e-6);
  // Only the first `steps` rows count.
  assert.equal(fidelity(full, policy, 3, 1).top1, 0);
});

t.test('a token the full model rules out adds nothing; one the policy rules out makes KL infinite', async () => {
  const full = Float32Array.from([0, -Infinity]);
  const policy = Float32Array.from([Math.log(0.5), Math.log(0.5)]);
  assert.ok(Math.abs(fidelity(full, policy, 2, 1).kl - Math.log(2)) < 1e-6);
  assert.equal(fidelity(policy, full, 2, 1).kl, Infinity);
});

t.test('shape errors are RangeErrors naming the sizes', async () => {
  assert.throws(() => fidelity(new Float32Array(6), new Float32Array(3), 3, 2), /needs 6 values per side; got 6 \(full\) and 3 \(policy\)/);
  assert.throws(() => fidelity(new Float32Array(3), new Float32Array(3), 3, 0), /positive vocabulary and step count/);
});
