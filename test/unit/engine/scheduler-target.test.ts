/**
 * The scheduler under a step latency target, on plain data: with measured
 * pass costs the prefill allowance is the time the decode passes leave of the
 * target (at least their own time), in tokens by the prefill cost model, never
 * a chunk a pass's fixed cost dominates; a short tail joins the chunk; until
 * costs are measured (or with no target) the token budget applies. Then the
 * cost model itself: it recovers a pass's fixed and per-token cost from
 * observed passes and follows a machine whose speed changes.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { PassCostModel, type PassCosts } from '../../../src/engine/pass-cost.js';
import { decodingSeqs as decoding, schedulerSeq } from '../../helpers/scheduler-seq.js';
import { Scheduler, type SchedulerSeq, type StepPlan } from '../../../src/engine/scheduler.js';

const seq = (id: string, over: Partial<SchedulerSeq> = {}): SchedulerSeq => schedulerSeq(id, { nextChunk: 512, batchablePrefill: false, ...over });

const target = new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 32, stepTargetMs: 100 });
const costs = (decodeMs: number, prefillFixedMs: number, prefillPerTokenMs: number): PassCosts => ({ decodeMs, prefillFixedMs, prefillPerTokenMs });

function chunk(scheduler: Scheduler, running: readonly SchedulerSeq[], c: PassCosts | null): StepPlan['prefill'] {
  return scheduler.schedule({ waiting: [], running, kvFreeBytes: 0, costs: c }).prefill;
}

t.test('target: the chunk fills the time the decode passes leave, in tokens by the measured prefill cost', async () => {
  const running = [...decoding(8), seq('p', { state: 'prefilling', promptLength: 400 })];
  // 100 ms target - 40 ms decode = 60 ms; (60 - 10 fixed) / 0.5 ms per token = 100 tokens.
  assert.deepEqual(chunk(target, running, costs(40, 10, 0.5)), { id: 'p', size: 100, last: false, variant: 'plain' });
  // A slower machine (twice the per-token cost): half the tokens, same time.
  assert.equal(chunk(target, running, costs(40, 10, 1))?.size, 50);
});

t.test('target: decode passes longer than the target still leave prefill their own time (no starvation)', async () => {
  const running = [...decoding(32), seq('p', { state: 'prefilling', promptLength: 400 })];
  // 150 ms of decode: prefill gets 150 ms, (150 - 10) / 1 = 140 tokens.
  assert.equal(chunk(target, running, costs(150, 10, 1))?.size, 140);
});

t.test('target: never a chunk whose time the pass fixed cost dominates', async () => {
  const running = [...decoding(8), seq('p', { state: 'prefilling', promptLength: 400 })];
  // 60 ms left, 50 of them fixed: 10 tokens would fit, but the fixed cost must be at most a quarter: 50 * 3 / 1 = 150 tokens.
  assert.equal(chunk(target, running, costs(40, 50, 1))?.size, 150);
});

t.test('target: a short tail joins the chunk, a long one waits for the next step', async () => {
  // 100 tokens fit; 120 remain: the 20-token tail (<= a quarter of 100) joins.
  assert.deepEqual(chunk(target, [...decoding(8), seq('p', { state: 'prefilling', promptLength: 120 })], costs(40, 10, 0.5)), {
    id: 'p',
    size: 120,
    last: true,
    variant: 'plain',
  });
  // 160 remain: a 60-token tail is a pass of its own.
  assert.equal(chunk(target, [...decoding(8), seq('p', { state: 'prefilling', promptLength: 160 })], costs(40, 10, 0.5))?.size, 100);
  // The policy's own chunk limit still holds: 110 of the 120, never the whole tail past it.
  assert.equal(chunk(target, [...decoding(8), seq('p', { state: 'prefilling', promptLength: 120, nextChunk: 110 })], costs(40, 10, 0.5))?.size, 110);
});

t.test('target: the policy limits a time-capped chunk like a budget-capped one', async () => {
  const window = 30;
  const remaining = 150;
  const limitChunk = (size: number): number => (remaining > size && remaining - size < window ? Math.max(1, remaining - window) : size);
  const running = [...decoding(8), seq('e', { state: 'prefilling', promptLength: remaining, limitChunk, prefillVariant: 'stats' })];
  // 100 fit; a 50-token remainder is not a short tail, and leaves at least the window: 100.
  assert.equal(chunk(target, running, costs(40, 10, 0.5))?.size, 100);
  // 130 fit (48 ms decode -> (52 - 0) / 0.4): a 20-token remainder joins as a tail (<= a quarter of 130).
  assert.equal(chunk(target, running, costs(48, 0, 0.4))?.size, 150);
});

t.test('target: no costs measured yet, or no target, or nothing decoding: the token budget rules as before', async () => {
  const running = [...decoding(6), seq('p', { state: 'prefilling', promptLength: 200 })];
  assert.equal(chunk(target, running, null)?.size, 26, 'no costs: 32 - 6 decode tokens');
  const budgetOnly = new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 32, stepTargetMs: 0 });
  assert.equal(chunk(budgetOnly, running, costs(40, 10, 0.5))?.size, 26, 'no target');
  assert.equal(chunk(target, [seq('p', { state: 'prefilling', promptLength: 600 })], costs(40, 10, 0.5))?.size, 512, 'nobody waits: a whole prefillChunk');
});

t.test('target: fresh short prompts share the time allowance, the chunk gets the rest', async () => {
  const running = [...decoding(8), seq('long', { state: 'prefilling', promptLength: 400 })];
  const waiting = [seq('s1', { promptLength: 30, batchablePrefill: true }), seq('s2', { promptLength: 20, batchablePrefill: true })];
  const plan = target.schedule({ waiting, running, kvFreeBytes: 1e9, costs: costs(40, 10, 0.5) });
  assert.deepEqual(plan.freshPrefill, ['s1', 's2']);
  // 100 tokens of allowance - 2 x 30 padded = 40.
  assert.equal(plan.prefill?.size, 40);
});

/**
 * A prompt arriving while streams decode, on a machine whose prefill pass
 * costs 10 ms + 0.5 ms per token and whose decode passes take 40 ms: under
 * the target it is in after fewer steps than under the 32-token budget, and
 * every predicted step stays within the target.
 */
t.test('simulation: fewer steps to the first token than the token budget, every step within the target', async () => {
  const c = costs(40, 10, 0.5);
  const steps = (scheduler: Scheduler): { steps: number; worstMs: number } => {
    let p = seq('p', { state: 'prefilling', promptLength: 256 });
    let worstMs = 0;
    for (let step = 1; step < 100; step++) {
      const plan = scheduler.schedule({ waiting: [], running: [...decoding(8), p], kvFreeBytes: 0, costs: c });
      const size = plan.prefill?.size ?? 0;
      worstMs = Math.max(worstMs, c.decodeMs + c.prefillFixedMs + c.prefillPerTokenMs * size);
      p = { ...p, prefilled: p.prefilled + size };
      if (p.prefilled >= p.promptLength) return { steps: step, worstMs };
    }
    throw new Error('the prompt never finished');
  };
  const timed = steps(target);
  const budget = steps(new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 32 }));
  assert.ok(timed.worstMs <= 100 * 1.25, `worst step ${timed.worstMs} ms (a tail may add up to a quarter of a chunk)`);
  assert.ok(timed.steps < budget.steps, `${timed.steps} steps under the target, ${budget.steps} under the token budget`);
});

t.test('cost model: recovers fixed and per-token cost, follows a machine that slows down, and knows nothing before it has seen passes', async () => {
  const m = new PassCostModel();
  assert.equal(m.costs(), null);
  m.observePrefill(64, 10 + 0.5 * 64);
  assert.equal(m.costs(), null, 'no decode step seen yet');
  m.observeDecode(40);
  const one = m.costs();
  assert.ok(one !== null);
  assert.equal(one.prefillFixedMs, 0, 'one pass size: no slope, all time per token');
  assert.ok(Math.abs(one.prefillPerTokenMs - 42 / 64) < 1e-9);
  for (const n of [16, 128, 32, 256, 64]) m.observePrefill(n, 10 + 0.5 * n);
  const fit = m.costs();
  assert.ok(fit !== null);
  assert.ok(Math.abs(fit.prefillFixedMs - 10) < 1e-6, `fixed ${fit.prefillFixedMs}`);
  assert.ok(Math.abs(fit.prefillPerTokenMs - 0.5) < 1e-9, `per token ${fit.prefillPerTokenMs}`);
  for (let i = 0; i < 200; i++) {
    const n = 16 + ((i * 37) % 240);
    m.observePrefill(n, 20 + 1 * n);
    m.observeDecode(80);
  }
  const slow = m.costs();
  assert.ok(slow !== null);
  assert.ok(Math.abs(slow.prefillPerTokenMs - 1) < 0.01 && Math.abs(slow.prefillFixedMs - 20) < 1, JSON.stringify(slow));
  assert.ok(Math.abs(slow.decodeMs - 80) < 0.01);
  m.observePrefill(0, 5);
  m.observePrefill(10, Number.NaN);
  assert.deepEqual(m.costs(), slow, 'empty or unmeasured passes are ignored');
});
