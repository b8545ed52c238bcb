import assert from 'node:assert/strict';
import t from 'tap';
import type { ExpertBits } from '../../../../src/model/compile/moe-quantize.js';
import { assignBitwidths, assignmentKey, type ExpertProfileEntry } from '../../../../src/policies/expert-offload/bitwidth.js';

const BYTES: Record<ExpertBits, number> = { 32: 1000, 8: 280, 4: 160, 2: 100 };

function profile(costs: Array<Partial<Record<ExpertBits, number>>>): ExpertProfileEntry[] {
  return costs.map((cost, i) => ({ layer: 0, expert: i, tokens: 1, cost }));
}

function bruteForce(p: ExpertProfileEntry[], choices: ExpertBits[], target: number): number {
  let best = Infinity;
  const walk = (i: number, bytes: number, cost: number): void => {
    if (bytes > target) return;
    if (i === p.length) {
      best = Math.min(best, cost);
      return;
    }
    for (const b of choices) walk(i + 1, bytes + BYTES[b], cost + (b === 32 ? 0 : p[i]!.cost[b]!));
  };
  walk(0, 0, 0);
  return best;
}

t.test('important experts get the bits, unimportant ones stay small, within the byte target', async () => {
  const p = profile([
    { 8: 0.001, 4: 0.02 }, // used a lot
    { 8: 0.0, 4: 0.0 }, // never routed
    { 8: 0.0001, 4: 0.002 },
  ]);
  const r = assignBitwidths({ profile: p, choices: [4, 8, 32], bytes: (_l, _e, b) => BYTES[b], targetBytes: 160 * 3 + 840 + 120 });
  assert.equal(r.bits.get(assignmentKey(0, 0)), 32);
  assert.equal(r.bits.get(assignmentKey(0, 1)), 4);
  assert.equal(r.bits.get(assignmentKey(0, 2)), 8);
  assert.ok(r.totalBytes <= 160 * 3 + 840 + 120);
});

t.test('a target below the all-smallest total keeps every expert at the smallest width', async () => {
  const p = profile([
    { 8: 1, 4: 2 },
    { 8: 1, 4: 2 },
  ]);
  const r = assignBitwidths({ profile: p, choices: [32, 8, 4], bytes: (_l, _e, b) => BYTES[b], targetBytes: 10 });
  assert.deepEqual([...r.bits.values()], [4, 4]);
});

t.test('greedy stays within one item of the brute-force optimum and never exceeds the target', async () => {
  let seed = 3;
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const choices: ExpertBits[] = [2, 4, 8, 32];
  for (let trial = 0; trial < 40; trial++) {
    const p = profile(
      Array.from({ length: 5 }, () => {
        const base = rnd() * rnd();
        return { 8: base * 0.01, 4: base * 0.1, 2: base * (0.5 + rnd()) };
      }),
    );
    const target = 500 + Math.floor(rnd() * 4000);
    const r = assignBitwidths({ profile: p, choices, bytes: (_l, _e, b) => BYTES[b], targetBytes: target });
    assert.ok(r.totalBytes <= target);
    const opt = bruteForce(p, choices, target);
    const slack = Math.max(...p.map((e) => e.cost[2]!));
    assert.ok(r.totalCost <= opt + slack + 1e-12, `trial ${trial}: greedy ${r.totalCost} vs optimum ${opt}`);
    assert.ok(r.totalCost >= opt - 1e-12);
  }
});

t.test('a missing profiled width is a clear error', async () => {
  assert.throws(
    () => assignBitwidths({ profile: profile([{ 8: 1 }]), choices: [4, 8], bytes: () => 1, targetBytes: 10 }),
    /expert 0:0 has no profiled cost at 4 bits/,
  );
});
