/**
 * A trace of engine steps for performance work: with `CAPSERVE_STEP_TRACE=FILE`
 * in the server's environment, every engine step appends one JSON line to FILE:
 * what the scheduler planned (decode rows and groups, fresh prompts, the prefill
 * chunk, the queue) and where the time went (decode passes, prefill passes, the
 * whole step, and the gap since the previous step ended, which is the worker's
 * time between steps: sending outputs, prefix-cache stores, messages, and any
 * wait for a core). Client-side inter-token latency is the step time plus the
 * gap plus delivery; the trace tells which one a slow token spent. Off (null)
 * without the variable: nothing is measured or written.
 */
import { appendFileSync } from 'node:fs';

export interface StepTraceRecord {
  /** Step start, ms on the worker's performance clock. */
  readonly t: number;
  /** Since the previous traced step ended, ms (0 for the first). */
  readonly gapMs: number;
  readonly stepMs: number;
  /** The step's decode passes, ms. */
  readonly decodeMs: number;
  /** Its before-prefill hook and prefill passes, ms. */
  readonly prefillMs: number;
  /** Sequences still waiting for admission after this step's admissions. */
  readonly waiting: number;
  readonly decodeRows: number;
  readonly decodeGroups: number;
  /** Fresh prompts prefilled together in one padded pass. */
  readonly freshPrompts: number;
  /** Tokens of the step's prefill chunk (0: none). */
  readonly chunkTokens: number;
}

export class StepTrace {
  private lastEnd: number | null = null;

  constructor(readonly path: string) {}

  /** Appends the record for a step that ran from `start` to `end` (performance clock, ms). */
  write(start: number, end: number, fields: Omit<StepTraceRecord, 't' | 'gapMs' | 'stepMs'>): void {
    const record: StepTraceRecord = {
      t: round(start),
      gapMs: this.lastEnd === null ? 0 : round(start - this.lastEnd),
      stepMs: round(end - start),
      ...fields,
      decodeMs: round(fields.decodeMs),
      prefillMs: round(fields.prefillMs),
    };
    this.lastEnd = end;
    appendFileSync(this.path, `${JSON.stringify(record)}\n`);
  }
}

/** The trace CAPSERVE_STEP_TRACE names, or null. */
export function stepTraceFromEnv(env: NodeJS.ProcessEnv = process.env): StepTrace | null {
  const path = env['CAPSERVE_STEP_TRACE'];
  return path === undefined || path === '' ? null : new StepTrace(path);
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
