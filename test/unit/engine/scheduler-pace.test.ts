/**
 * Prefill in pace with the workload: with the measured prompt-to-output ratio
 * of finished requests, a step's prefill allowance is at least 1.5x the prompt
 * tokens its decoding streams bring, so a small token budget next to many
 * streams no longer lets the prompt queue grow until fewer streams decode. On
 * plain data, including a closed loop of 32 clients.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { decodingSeqs as decoding, schedulerSeq } from '../../helpers/scheduler-seq.js';
import { Scheduler, type SchedulerSeq } from '../../../src/engine/scheduler.js';
import { WorkloadMix } from '../../../src/engine/workload-mix.js';

const seq = (id: string, over: Partial<SchedulerSeq> = {}): SchedulerSeq => schedulerSeq(id, { nextChunk: 512, batchablePrefill: false, ...over });

t.test('pace: prefill gets at least 1.5x the prompt tokens the decoding streams bring, within a prefillChunk', async () => {
  const budgeted = new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 32 });
  const running = [...decoding(40), seq('p', { state: 'prefilling', promptLength: 600 })];
  const chunk = (promptRatio: number | null): number | undefined => budgeted.schedule({ waiting: [], running, kvFreeBytes: 0, promptRatio }).prefill?.size;
  assert.equal(chunk(null), 8, 'unmeasured: a quarter of the budget, as before');
  assert.equal(chunk(2), 120, '1.5 x 2 prompt tokens per generated token x 40 streams');
  assert.equal(chunk(0.05), 8, 'a budget above the pace is kept');
  assert.equal(chunk(20), 512, 'capped at prefillChunk');
  const unbounded = new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 0 });
  assert.equal(
    unbounded.schedule({ waiting: [], running, kvFreeBytes: 0, promptRatio: 0.01 }).prefill?.size,
    512,
    'no budget: a whole chunk, whatever the pace',
  );
});

t.test('pace: a time target is raised the same way', async () => {
  const timed = new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 32, stepTargetMs: 100 });
  const running = [...decoding(40), seq('p', { state: 'prefilling', promptLength: 600 })];
  const costs = { decodeMs: 60, prefillFixedMs: 0, prefillPerTokenMs: 1 };
  // The target leaves max(100 - 60, 60) = 60 ms: 60 tokens; the pace asks 1.5 x 2 x 40 = 120.
  assert.equal(timed.schedule({ waiting: [], running, kvFreeBytes: 0, costs }).prefill?.size, 60);
  assert.equal(timed.schedule({ waiting: [], running, kvFreeBytes: 0, costs, promptRatio: 2 }).prefill?.size, 120);
});

t.test('workload mix: prompt tokens per generated token, following a change of workload, ignoring requests that generated nothing', async () => {
  const mix = new WorkloadMix();
  assert.equal(mix.ratio(), null);
  mix.observe(500, 0);
  assert.equal(mix.ratio(), null, 'a request that generated nothing says nothing about the pace');
  mix.observe(256, 128);
  assert.equal(mix.ratio(), 2);
  for (let i = 0; i < 200; i++) mix.observe(2000, 100);
  const r = mix.ratio();
  assert.ok(r !== null && Math.abs(r - 20) < 0.1, `followed to ${r}`);
});

interface Client {
  seq: SchedulerSeq;
  generated: number;
}

/**
 * A closed loop: 32 clients each send a 256-token prompt, read 128 tokens and
 * send the next, under a 64-token budget. Returns the mean number of decoding
 * streams and the mean prompt queue over steps 600-1200.
 */
function closedLoop(paced: boolean): { decoding: number; queued: number } {
  const scheduler = new Scheduler({ maxConcurrent: 64, prefillChunk: 512, maxTokensPerStep: 64 });
  const mix = new WorkloadMix();
  let serial = 0;
  const fresh = (): Client => ({ seq: seq(`r${serial++}`, { promptLength: 256 }), generated: 0 });
  let clients: Client[] = Array.from({ length: 32 }, fresh);
  let decodingSum = 0;
  let queuedSum = 0;
  for (let step = 0; step < 1200; step++) {
    const waiting = clients.filter((c) => c.seq.state === 'waiting').map((c) => c.seq);
    const running = clients.filter((c) => c.seq.state !== 'waiting').map((c) => c.seq);
    const plan = scheduler.schedule({ waiting, running, kvFreeBytes: 1e12, promptRatio: paced ? mix.ratio() : null });
    const byId = new Map(clients.map((c) => [c.seq.id, c]));
    for (const a of plan.admitted) {
      const c = byId.get(a.id) as Client;
      c.seq = { ...c.seq, state: a.state };
    }
    const decoding = new Set(plan.decode.flatMap((g) => g.ids));
    if (step >= 600) {
      decodingSum += decoding.size;
      queuedSum += clients.length - decoding.size;
    }
    const next: Client[] = [];
    for (const c of clients) {
      if (decoding.has(c.seq.id)) c.generated += 1;
      const chunk = plan.prefill?.id === c.seq.id ? plan.prefill : null;
      if (chunk) {
        const prefilled = c.seq.prefilled + chunk.size;
        c.seq = { ...c.seq, prefilled, state: chunk.last ? 'decoding' : 'prefilling' };
        if (chunk.last) c.generated = 1;
      }
      if (c.generated >= 128) {
        mix.observe(c.seq.promptLength, c.generated);
        next.push(fresh());
      } else {
        next.push(c);
      }
    }
    clients = next;
  }
  return { decoding: decodingSum / 600, queued: queuedSum / 600 };
}

t.test('closed loop, 32 clients under a 64-token budget: paced, all of them decode; unpaced, the prompt queue persists', async () => {
  const unpaced = closedLoop(false);
  const paced = closedLoop(true);
  t.comment(`mean decoding streams ${unpaced.decoding.toFixed(1)} unpaced, ${paced.decoding.toFixed(1)} paced (of 32)`);
  assert.ok(unpaced.decoding < 26, `unpaced: ${unpaced.decoding} streams decode on average, the rest queue for prefill`);
  assert.ok(paced.decoding > 29, `paced: ${paced.decoding} streams decode on average`);
  assert.ok(paced.queued < unpaced.queued / 2);
});
