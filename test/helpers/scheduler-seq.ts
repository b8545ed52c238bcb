/** Sequences as the scheduler reads them (plain data), for the scheduler's unit tests. */
import type { SchedulerSeq } from '../../src/engine/scheduler.js';

/** A fresh plain request waiting for admission; `over` sets what a test needs. */
export function schedulerSeq(id: string, over: Partial<SchedulerSeq> = {}): SchedulerSeq {
  return {
    id,
    state: 'waiting',
    abortRequested: false,
    reserveBytes: 100,
    promptLength: 10,
    prefilled: 0,
    nextChunk: 64,
    batchablePrefill: true,
    prefillVariant: 'plain',
    decodeVariant: 'plain',
    decodeKey: '',
    hasBeforePrefill: false,
    ...over,
  };
}

/** n plain sequences in the decoding state, ids d0..d(n-1). */
export function decodingSeqs(n: number): SchedulerSeq[] {
  return Array.from({ length: n }, (_, i) => schedulerSeq(`d${i}`, { state: 'decoding' }));
}
