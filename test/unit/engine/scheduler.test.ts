import t from 'tap';
import assert from 'node:assert/strict';
import { schedulerSeq } from '../../helpers/scheduler-seq.js';
import { Scheduler } from '../../../src/engine/scheduler.js';

const seq = schedulerSeq;

const scheduler = new Scheduler({ maxConcurrent: 4, prefillChunk: 64 });

t.test('admission is head of line by KV reservation: no room stops the queue, never skips ahead', async () => {
  const plan = scheduler.schedule({
    waiting: [seq('a', { reserveBytes: 60 }), seq('b', { reserveBytes: 60 }), seq('c', { reserveBytes: 10 })],
    running: [],
    kvFreeBytes: 100,
  });
  assert.deepEqual(plan.admitted, [{ id: 'a', state: 'prefilling' }]);
  // 'a' alone prefills in a chunk: one fresh prompt is not a batch.
  assert.deepEqual(plan.freshPrefill, []);
  assert.deepEqual(plan.prefill, { id: 'a', size: 10, last: true, variant: 'plain' });
});

t.test('admission stops at maxConcurrent; a before-prefill hook starts the sequence in compressing', async () => {
  const running = [seq('r1', { state: 'decoding' }), seq('r2', { state: 'decoding' }), seq('r3', { state: 'decoding' })];
  const plan = scheduler.schedule({ waiting: [seq('w1', { hasBeforePrefill: true }), seq('w2')], running, kvFreeBytes: 1e9 });
  assert.deepEqual(plan.admitted, [{ id: 'w1', state: 'compressing' }]);
  assert.equal(plan.beforePrefill, 'w1');
  assert.equal(plan.prefill, null, 'a compressing sequence prefills once its hook ran, not in the same step');
});

t.test('chunking: the policy-limited chunk, capped at what remains; the last chunk is marked', async () => {
  const running = [seq('p', { state: 'prefilling', promptLength: 100, prefilled: 64, nextChunk: 32, prefillVariant: 'stats', batchablePrefill: false })];
  assert.deepEqual(scheduler.schedule({ waiting: [], running, kvFreeBytes: 0 }).prefill, { id: 'p', size: 32, last: false, variant: 'stats' });
  const tail = [seq('p', { state: 'prefilling', promptLength: 100, prefilled: 96, nextChunk: 32 })];
  assert.deepEqual(scheduler.schedule({ waiting: [], running: tail, kvFreeBytes: 0 }).prefill, { id: 'p', size: 4, last: true, variant: 'plain' });
});

t.test('fresh short prompts share one padded pass within the prefill budget; the next prefilling sequence gets the chunk', async () => {
  const plan = scheduler.schedule({
    waiting: [
      seq('a', { promptLength: 20 }),
      seq('b', { promptLength: 30 }),
      seq('c', { promptLength: 30 }),
      seq('d', { promptLength: 8, batchablePrefill: false }),
    ],
    running: [],
    kvFreeBytes: 1e9,
  });
  assert.deepEqual(
    plan.admitted.map((a) => a.id),
    ['a', 'b', 'c', 'd'],
  );
  // 2 x 30 fits 64; 3 x 30 does not.
  assert.deepEqual(plan.freshPrefill, ['a', 'b']);
  assert.equal(plan.prefill?.id, 'c');
});

t.test('decoding sequences are grouped by graph variant and batch key, in first-seen order', async () => {
  const running = [
    seq('p1', { state: 'decoding' }),
    seq('q16', { state: 'decoding', decodeVariant: 'quest', decodeKey: 'page-16' }),
    seq('s1', { state: 'decoding', decodeVariant: 'stats' }),
    seq('q8', { state: 'decoding', decodeVariant: 'quest', decodeKey: 'page-8' }),
    seq('p2', { state: 'decoding' }),
    seq('q16b', { state: 'decoding', decodeVariant: 'quest', decodeKey: 'page-16' }),
  ];
  const plan = scheduler.schedule({ waiting: [], running, kvFreeBytes: 0 });
  assert.deepEqual(
    plan.decode.map((g) => [g.variant, g.key, g.ids]),
    [
      ['plain', '', ['p1', 'p2']],
      ['quest', 'page-16', ['q16', 'q16b']],
      ['stats', '', ['s1']],
      ['quest', 'page-8', ['q8']],
    ],
  );
});

t.test('aborted sequences are reaped before anything is planned for them, and free their slot', async () => {
  const running = [
    seq('r1', { state: 'decoding', abortRequested: true }),
    seq('r2', { state: 'decoding' }),
    seq('r3', { state: 'prefilling', abortRequested: true }),
  ];
  const small = new Scheduler({ maxConcurrent: 2, prefillChunk: 64 });
  const plan = small.schedule({ waiting: [seq('w-aborted', { abortRequested: true }), seq('w')], running, kvFreeBytes: 1e9 });
  assert.deepEqual([...plan.aborted].sort(), ['r1', 'r3', 'w-aborted']);
  assert.deepEqual(
    plan.admitted.map((a) => a.id),
    ['w'],
  );
  assert.deepEqual(
    plan.decode.map((g) => g.ids),
    [['r2']],
  );
  assert.equal(plan.prefill?.id, 'w');
});
