/**
 * STI's planner: the preload buffer takes the first layers in order, residency
 * never exceeds the budget and goes first to the layers that would stall, fixed
 * widths are honoured, adaptive widths spend bytes where the profile says they
 * matter, and a latency target narrows widths until the pipeline model meets it.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import type { ExpertBits } from '../../../../src/model/compile/moe-quantize.js';
import { planShards, simulate, widthsForBytes, type PlanProblem, type PlanShard } from '../../../../src/policies/weight-elastic/planner.js';

const BYTES: Record<ExpertBits, number> = { 32: 3200, 8: 900, 4: 500, 2: 300 };

function shards(layers: number, perLayer: number, cost: (id: number, b: ExpertBits) => number): PlanShard[] {
  return Array.from({ length: layers * perLayer }, (_, id) => ({
    id,
    layer: Math.floor(id / perLayer),
    bytes: (b: ExpertBits) => BYTES[b],
    cost: { 32: 0, 8: cost(id, 8), 4: cost(id, 4), 2: cost(id, 2) },
  }));
}

const base = (over: Partial<PlanProblem> = {}): PlanProblem => ({
  numLayers: 4,
  shards: shards(4, 2, (id, b) => (id % 2 === 0 ? 10 : 0.01) * (32 / b)),
  choices: [2, 4, 8, 32],
  fixedBits: null,
  budgetBytes: 0,
  preloadBytes: 0,
  targetMsPerToken: 0,
  hardware: { computeMsPerLayer: 1, readBytesPerMs: 3200 },
  ...over,
});

t.test('the pipeline model: reads of layer l+1 overlap layer l; the first layer always waits for its own reads', async () => {
  assert.deepEqual(simulate(3, [0, 0, 0], { computeMsPerLayer: 1, readBytesPerMs: 1 }), { totalMs: 3, stallMs: 0, firstStallLayer: -1 });
  const s = simulate(3, [2, 1, 1], { computeMsPerLayer: 1, readBytesPerMs: 1 });
  assert.equal(s.firstStallLayer, 0);
  assert.equal(s.stallMs, 2);
  assert.equal(s.totalMs, 5);
  // Layer 1's reads (4 ms) take longer than layer 0's compute (1 ms): a 3 ms stall at layer 1.
  assert.deepEqual(simulate(2, [0, 4], { computeMsPerLayer: 1, readBytesPerMs: 1 }), { totalMs: 5, stallMs: 3, firstStallLayer: 1 });
});

t.test('no target: every shard at its widest width; preload takes the first shards in order; residency within the budget', async () => {
  const p = planShards(base({ preloadBytes: 2 * 3200 + 100, budgetBytes: 3 * 3200 + 10 }));
  assert.ok(p.bits.every((b) => b === 32));
  assert.deepEqual(p.preload, [true, true, false, false, false, false, false, false]);
  assert.equal(p.residentBytes, 3 * 3200);
  assert.ok(p.resident.every((r, i) => !(r && p.preload[i])));
  assert.equal(p.streamedBytes, 3 * 3200);
  assert.equal(p.cost, 0);
});

t.test('residency goes first to the layer that stalls', async () => {
  // Reads cost 1 ms per fp32 shard, compute 1 ms per layer: layer 0 (not preloaded) stalls first.
  const p = planShards(base({ budgetBytes: 2 * 3200, hardware: { computeMsPerLayer: 1, readBytesPerMs: 3200 } }));
  assert.deepEqual(p.resident.slice(0, 2), [true, true]);
  const none = planShards(base({ budgetBytes: 0 }));
  assert.ok(p.predictedStallMs < none.predictedStallMs);
});

t.test("fixed widths are every shard's, at any budget", async () => {
  for (const b of [32, 8, 4, 2] as const) {
    const p = planShards(base({ fixedBits: b, budgetBytes: 1000 }));
    assert.ok(p.bits.every((x) => x === b));
    assert.ok(p.residentBytes <= 1000);
  }
});

t.test('adaptive widths under a byte cap follow importance: important shards get the bytes', async () => {
  const w = widthsForBytes(base(), 4 * 900 + 4 * 300);
  // Even ids are 1000x more important: they are upgraded first.
  const even = w.bits.filter((_, i) => i % 2 === 0);
  const odd = w.bits.filter((_, i) => i % 2 === 1);
  assert.ok(Math.min(...even) > Math.max(...odd), `even ${even} odd ${odd}`);
});

t.test('a latency target narrows widths until the predicted time meets it, keeping the important shards widest', async () => {
  const loose = planShards(base());
  const target = loose.predictedMsPerToken / 2;
  const p = planShards(base({ targetMsPerToken: target }));
  assert.ok(p.meetsTarget, `predicted ${p.predictedMsPerToken} vs target ${target}`);
  assert.ok(p.predictedMsPerToken <= target);
  assert.ok(p.totalBytes < loose.totalBytes);
  const even = p.bits.filter((_, i) => i % 2 === 0).reduce((a, b) => a + b, 0);
  const odd = p.bits.filter((_, i) => i % 2 === 1).reduce((a, b) => a + b, 0);
  assert.ok(even >= odd);
  // An unreachable target says so.
  assert.equal(planShards(base({ targetMsPerToken: 0.001 })).meetsTarget, false);
});
