import type { EngineClient, FinishReason, GenerateRequest, TokenEvent, Usage } from '../engine/types.js';
import type { CapserveMetrics } from '../metrics/metrics.js';
import { observePolicyReport } from '../metrics/policy-report.js';
import { SequenceTimer } from '../metrics/sequence-timer.js';
import type { DroppedSpan } from '../policies/compression/types.js';
import type { PolicyReport } from '../policies/types.js';
import type { ConstraintReport } from '../engine/grammar/matcher.js';

export type TokenOut = Extract<TokenEvent, { type: 'token' }>;

/** A choice's generated ids and the engine's log-softmax row for each (requests that asked captureLogprobs). */
export interface CapturedSteps {
  readonly tokens: readonly number[];
  readonly rows: Float32Array;
}

/** How one choice ended (engine timings dropped: they feed the metrics here). */
export interface ChoiceDone {
  readonly type: 'done';
  readonly finishReason: FinishReason;
  readonly text: string;
  readonly usage: Usage;
  readonly stopReason: string | number | null;
  /** What the serving policy did; null when the choice was cut off before the engine reported. */
  readonly report: PolicyReport | null;
  readonly capture: CapturedSteps | null;
  /** What context compression dropped, when the request asked (returnDropped). */
  readonly dropped: readonly DroppedSpan[] | null;
  /** How the grammar went (constrained requests). */
  readonly constraint: ConstraintReport | null;
}

export interface ChoiceEvent {
  readonly index: number;
  readonly event: TokenOut | ChoiceDone;
}

interface Pending {
  readonly index: number;
  readonly result: IteratorResult<TokenEvent>;
}

/**
 * Runs the choices of one request (n generations) side by side and merges
 * their events in arrival order. Every choice ends with exactly one 'done':
 * when the signal aborts, choices the engine did not finish get a synthetic
 * 'done' with finish reason 'abort' and the tokens counted so far. An engine
 * error aborts the sibling choices and is rethrown. P-axis metrics, the
 * policy's C and A report, and the live context lengths are recorded here.
 */
export async function* runChoices(
  engine: EngineClient,
  requests: readonly GenerateRequest[],
  signal: AbortSignal,
  metrics: CapserveMetrics,
  arrivedAt: number,
): AsyncGenerator<ChoiceEvent> {
  const inner = new AbortController();
  const forward = (): void => inner.abort(signal.reason);
  if (signal.aborted) forward();
  else signal.addEventListener('abort', forward, { once: true });

  const iterators = new Map<number, AsyncIterator<TokenEvent>>();
  const pending = new Map<number, Promise<Pending>>();
  const completion = requests.map(() => 0);
  const finished = requests.map(() => false);
  const timers = requests.map((r) => new SequenceTimer(metrics, r.policy, arrivedAt));
  const live = requests.map((r) => metrics.liveContexts.start(r.policy, r.promptTokens.length));
  const captured = requests.map((r) =>
    r.captureLogprobs === true || (typeof r.captureLogprobs === 'number' && r.captureLogprobs > 0) ? ([] as number[]) : null,
  );
  // The engine captures rows for the first N steps only: keep as many ids, so ids and rows line up.
  const captureLimit = requests.map((r) => (typeof r.captureLogprobs === 'number' ? r.captureLogprobs : Infinity));
  // Prompt tokens count once per prompt, however many choices share it: choices of one prompt share its token array.
  const countsPrompt = requests.map((r, i) => i === 0 || requests[i - 1]?.promptTokens !== r.promptTokens);
  const pull = (index: number, it: AsyncIterator<TokenEvent>): void => {
    pending.set(
      index,
      it.next().then((result) => ({ index, result })),
    );
  };

  try {
    requests.forEach((request, index) => {
      const it = engine.generate(request, inner.signal)[Symbol.asyncIterator]();
      iterators.set(index, it);
      pull(index, it);
    });
    while (pending.size > 0) {
      let next: Pending;
      try {
        next = await Promise.race(pending.values());
      } catch (err) {
        if (inner.signal.aborted) break;
        throw err;
      }
      const { index, result } = next;
      pending.delete(index);
      if (result.done === true) {
        iterators.delete(index);
        continue;
      }
      const event = result.value;
      if (event.type === 'token') {
        completion[index] = (completion[index] ?? 0) + 1;
        timers[index]?.token();
        const context = live[index];
        if (context !== undefined) context.tokens++;
        const ids = captured[index];
        if (ids !== null && ids !== undefined && ids.length < (captureLimit[index] ?? 0)) ids.push(event.tokenId);
      } else {
        finished[index] = true;
        live[index]?.end();
        observePolicyReport(metrics, event.policy);
        timers[index]?.done(
          event.finishReason,
          { promptTokens: countsPrompt[index] === true ? event.usage.promptTokens : 0, completionTokens: event.usage.completionTokens },
          event.timings.queueMs,
        );
      }
      yield {
        index,
        event:
          event.type === 'token'
            ? event
            : {
                type: 'done',
                finishReason: event.finishReason,
                text: event.text,
                usage: event.usage,
                stopReason: event.stopReason,
                report: event.policy,
                capture: capturedSteps(captured[index] ?? null, event.capturedLogprobs),
                dropped: event.dropped ?? null,
                constraint: event.constraint ?? null,
              },
      };
      // Pull on even after 'done' so the engine's generator runs to its end (and its cleanup).
      const it = iterators.get(index);
      if (it !== undefined) pull(index, it);
    }
    if (inner.signal.aborted) {
      for (let index = 0; index < requests.length; index++) {
        if (finished[index] === true) continue;
        finished[index] = true;
        const usage = { promptTokens: requests[index]?.promptTokens.length ?? 0, completionTokens: completion[index] ?? 0 };
        const reason: FinishReason = 'abort';
        timers[index]?.done(reason, { promptTokens: countsPrompt[index] === true ? usage.promptTokens : 0, completionTokens: usage.completionTokens }, null);
        yield {
          index,
          event: { type: 'done', finishReason: reason, text: '', usage, stopReason: null, report: null, capture: null, dropped: null, constraint: null },
        };
      }
    }
  } finally {
    for (const context of live) context.end();
    signal.removeEventListener('abort', forward);
    if (iterators.size > 0) {
      inner.abort(signal.reason);
      for (const it of iterators.values()) {
        // Closing a generator that is mid-await rejects; nothing is waiting for it any more.
        void it.return?.().catch(() => undefined);
      }
      for (const p of pending.values()) p.catch(() => undefined);
    }
  }
}

function capturedSteps(tokens: readonly number[] | null, rows: Float32Array | undefined): CapturedSteps | null {
  return tokens === null || rows === undefined ? null : { tokens, rows };
}
