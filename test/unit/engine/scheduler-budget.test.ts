/**
 * The scheduler under a token budget per step (chunked-prefill scheduling), on
 * plain data: decode runs every step, prefill chunks are bounded by what the
 * decode tokens leave (never less than a quarter of the budget), prompts are
 * served first come first served and all finish, and a cached prefix starts
 * the prefill where the cache ends.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { decodingSeqs as decoding, schedulerSeq } from '../../helpers/scheduler-seq.js';
import { Scheduler, type SchedulerSeq, type StepPlan } from '../../../src/engine/scheduler.js';

const seq = (id: string, over: Partial<SchedulerSeq> = {}): SchedulerSeq => schedulerSeq(id, { nextChunk: 512, ...over });

const budgeted = new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 32 });

/** Tokens a plan runs: one per decoding sequence, the padded fresh batch, the chunk. */
function planTokens(plan: StepPlan, all: readonly SchedulerSeq[]): number {
  const decode = plan.decode.reduce((n, g) => n + g.ids.length, 0);
  const fresh = plan.freshPrefill.map((id) => all.find((s) => s.id === id)?.promptLength ?? 0);
  return decode + Math.max(0, ...fresh) * fresh.length + (plan.prefill?.size ?? 0);
}

t.test('budget: every decoding sequence runs, and the prefill chunk gets what the decode tokens leave', async () => {
  const running = [...decoding(6), seq('p', { state: 'prefilling', promptLength: 200, batchablePrefill: false })];
  const plan = budgeted.schedule({ waiting: [], running, kvFreeBytes: 0 });
  assert.deepEqual(
    plan.decode.map((g) => g.ids.length),
    [6],
  );
  assert.deepEqual(plan.prefill, { id: 'p', size: 26, last: false, variant: 'plain' });
  assert.equal(planTokens(plan, running), 32);
});

t.test('budget: with more decode tokens than the budget, prefill still gets a quarter of it (no starvation)', async () => {
  const running = [...decoding(40), seq('p', { state: 'prefilling', promptLength: 200 })];
  const plan = budgeted.schedule({ waiting: [], running, kvFreeBytes: 0 });
  assert.equal(plan.decode[0]?.ids.length, 40);
  assert.equal(plan.prefill?.size, 8);
});

t.test('budget: with nothing decoding no one waits, so prefill runs whole prefillChunk passes and batches fresh prompts', async () => {
  const alone = budgeted.schedule({ waiting: [seq('a', { promptLength: 300 })], running: [], kvFreeBytes: 1e9 });
  assert.deepEqual(alone.prefill, { id: 'a', size: 300, last: true, variant: 'plain' });
  const burst = budgeted.schedule({
    waiting: [seq('a', { promptLength: 100 }), seq('b', { promptLength: 100 }), seq('c', { promptLength: 300 })],
    running: [],
    kvFreeBytes: 1e9,
  });
  assert.deepEqual(burst.freshPrefill, ['a', 'b'], 'two 100-token prompts share a pass; 3 x 300 exceeds 512');
  assert.deepEqual(burst.prefill, { id: 'c', size: 300, last: true, variant: 'plain' });
});

t.test('budget: fresh short prompts share a padded pass within the allowance; the chunk gets what is left of it', async () => {
  const running = [...decoding(4), seq('long', { state: 'prefilling', promptLength: 100, prefilled: 0, batchablePrefill: false })];
  const waiting = [seq('s1', { promptLength: 6 }), seq('s2', { promptLength: 8 })];
  const plan = budgeted.schedule({ waiting, running, kvFreeBytes: 1e9 });
  assert.deepEqual(plan.freshPrefill, ['s1', 's2']);
  // 32 - 4 decode tokens - 2 x 8 padded = 12 for the chunk.
  assert.deepEqual(plan.prefill, { id: 'long', size: 12, last: false, variant: 'plain' });
  assert.equal(planTokens(plan, [...running, ...waiting]), 32);
});

t.test('budget: the policy limits a budget-capped chunk (an observation window must fit the last chunk)', async () => {
  const window = 20;
  const remaining = 40;
  const limitChunk = (size: number): number => (remaining > size && remaining - size < window ? Math.max(1, remaining - window) : size);
  const running = [
    ...decoding(6),
    seq('e', { state: 'prefilling', promptLength: 40, nextChunk: 512, limitChunk, prefillVariant: 'stats', batchablePrefill: false }),
  ];
  const plan = budgeted.schedule({ waiting: [], running, kvFreeBytes: 0 });
  // The budget leaves 26; 26 would leave a 14-token last chunk, shorter than the window: 20 now, 20 last.
  assert.deepEqual(plan.prefill, { id: 'e', size: 20, last: false, variant: 'stats' });
});

t.test('a cached prefix: the admitted sequence prefills only the rest, and is not a fresh prompt', async () => {
  const plan = budgeted.schedule({
    waiting: [seq('a', { promptLength: 50, cachedPrefix: 48 }), seq('b', { promptLength: 12 })],
    running: decoding(2),
    kvFreeBytes: 1e9,
  });
  assert.deepEqual(
    plan.admitted.map((a) => a.id),
    ['a', 'b'],
  );
  assert.deepEqual(plan.freshPrefill, []);
  assert.deepEqual(plan.prefill, { id: 'a', size: 2, last: true, variant: 'plain' });
  const legacy = new Scheduler({ maxConcurrent: 4, prefillChunk: 64 });
  assert.deepEqual(legacy.schedule({ waiting: [seq('a', { promptLength: 50, cachedPrefix: 16 })], running: [], kvFreeBytes: 1e9 }).prefill, {
    id: 'a',
    size: 34,
    last: true,
    variant: 'plain',
  });
});

t.test('no budget (0): a step prefills a whole chunk however many sequences decode', async () => {
  const legacy = new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 0 });
  const plan = legacy.schedule({ waiting: [], running: [...decoding(8), seq('p', { state: 'prefilling', promptLength: 256 })], kvFreeBytes: 0 });
  assert.equal(plan.prefill?.size, 256);
});

/**
 * Runs the scheduler over plain data for many steps: 8 streams decode for the
 * whole run while 5 prompts of mixed lengths arrive at different steps.
 */
t.test('simulation: decode every step, every step within the budget, prompts served in order and all finish', async () => {
  const budget = 48;
  const scheduler = new Scheduler({ maxConcurrent: 16, prefillChunk: 512, maxTokensPerStep: budget });
  const state = new Map<string, SchedulerSeq>();
  for (const d of decoding(8)) state.set(d.id, d);
  const arrivals: [number, SchedulerSeq][] = [
    [0, seq('p0', { promptLength: 256 })],
    [0, seq('p1', { promptLength: 256 })],
    [3, seq('p2', { promptLength: 30 })],
    [5, seq('p3', { promptLength: 500 })],
    [9, seq('p4', { promptLength: 7 })],
  ];
  const waiting: string[] = [];
  const finishedAt = new Map<string, number>();
  for (let step = 0; step < 200 && finishedAt.size < arrivals.length; step++) {
    for (const [at, s] of arrivals) {
      if (at !== step) continue;
      state.set(s.id, s);
      waiting.push(s.id);
    }
    const running = [...state.values()].filter((s) => s.state !== 'waiting');
    const plan = scheduler.schedule({ waiting: waiting.map((id) => state.get(id) as SchedulerSeq), running, kvFreeBytes: 1e9 });
    const all = [...state.values()];
    assert.equal(
      plan.decode.reduce((n, g) => n + g.ids.length, 0),
      all.filter((s) => s.state === 'decoding').length,
      `step ${step}: every decoding sequence decodes`,
    );
    assert.ok(planTokens(plan, all) <= budget, `step ${step}: ${planTokens(plan, all)} tokens within the budget of ${budget}`);
    for (const a of plan.admitted) {
      waiting.splice(waiting.indexOf(a.id), 1);
      state.set(a.id, { ...(state.get(a.id) as SchedulerSeq), state: a.state });
    }
    const advance = (id: string, n: number): void => {
      const s = state.get(id) as SchedulerSeq;
      const prefilled = s.prefilled + n;
      const done = prefilled >= s.promptLength;
      state.set(id, { ...s, prefilled, state: done ? 'decoding' : 'prefilling' });
      if (done) finishedAt.set(id, step);
    };
    for (const id of plan.freshPrefill) advance(id, (state.get(id) as SchedulerSeq).promptLength);
    if (plan.prefill) advance(plan.prefill.id, plan.prefill.size);
  }
  assert.equal(finishedAt.size, arrivals.length, 'every prompt finished its prefill');
  const order = [...finishedAt.entries()].sort((a, b) => a[1] - b[1]).map(([id]) => id);
  assert.deepEqual(order.slice(0, 2), ['p0', 'p1'], 'first come, first served');
  assert.ok((finishedAt.get('p3') ?? 0) > (finishedAt.get('p2') ?? 0));
});
