/**
 * The update stage of an engine step: folds a pass's logits back into a
 * sequence (sampling, logprob capture, stop tokens and strings,
 * detokenization, the length limit) and ends sequences (done, scored, or
 * failed), releasing their KV and emitting their outputs. Knows no runner and
 * no graph; the core drains what it emits.
 */
import type { ModelSpec } from '../model/spec.js';
import { EngineError, type EngineErrorCode, type RequestField } from './errors.js';
import { logSoftmaxRow } from './log-softmax.js';
import { policyReport } from './policy-report.js';
import { scoreResult } from './scoring.js';
import type { Sequence } from './sequence.js';
import type { ScoreResult, TokenEvent } from './types.js';

export type CoreOutput =
  | { readonly id: string; readonly event: TokenEvent }
  | { readonly id: string; readonly scored: ScoreResult }
  | {
      readonly id: string;
      readonly error: {
        readonly code: EngineErrorCode;
        readonly message: string;
        readonly field: RequestField | null;
        readonly retryAfterSeconds: number | null;
      };
    };

export class StepUpdate {
  private out: CoreOutput[] = [];

  constructor(
    private readonly spec: Pick<ModelSpec, 'vocabSize' | 'numLayers'>,
    private readonly contextLength: number,
    /** Takes a finished sequence out of the core's queues. */
    private readonly remove: (seq: Sequence) => void,
    /**
     * Sees a sequence that ended normally (or aborted) while its KV is still
     * intact (the prefix cache keeps it); true: it took the KV over and
     * releases it itself (later).
     */
    private readonly retire: (seq: Sequence) => boolean = () => false,
  ) {}

  /** Outputs produced since the last call. */
  drain(): CoreOutput[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  /**
   * Runs one sequence's share of a batched pass. What goes wrong there (its
   * sampling, its detokenizer, its policy state) ends that sequence alone; the
   * rest of the batch goes on. Only a failed forward pass fails every sequence in it.
   */
  isolated(seq: Sequence, work: () => void): void {
    try {
      work();
    } catch (err) {
      this.finishWithError(seq, err);
    }
  }

  /** Samples the next token from `logits`, streams its text, and decides whether the sequence ends. */
  accept(seq: Sequence, logits: Float32Array): void {
    const capture = seq.request.captureLogprobs;
    if (capture === true || (typeof capture === 'number' && seq.generated < capture)) seq.captured.push(logSoftmaxRow(logits));
    const forced = seq.request.forcedTokens?.[seq.generated];
    const r = forced === undefined ? seq.sampler.sample(logits) : { tokenId: forced, logprob: null, topLogprobs: null };
    seq.generated += 1;
    seq.pendingToken = r.tokenId;
    seq.outputTokens.push(r.tokenId);
    // Logprob strings are decoded in the context the token follows, before it joins that context.
    const strings = r.logprob === null ? [] : seq.decodeStream.peek([r.tokenId, ...(r.topLogprobs ?? []).map((t) => t.tokenId)]);
    const tokenText = strings[0] ?? '';
    const topLogprobs = r.topLogprobs === null ? null : r.topLogprobs.map((t, i) => ({ ...t, text: strings[i + 1] ?? '' }));
    const token = { type: 'token', tokenId: r.tokenId, tokenText, logprob: r.logprob, topLogprobs } as const;
    if (seq.stopIds.has(r.tokenId)) {
      seq.finishReason = 'stop';
      seq.stopReason = r.tokenId;
      this.out.push({ id: seq.id, event: { ...token, text: '' } });
      this.finish(seq, this.trailingText(seq));
      return;
    }
    const delta = seq.decodeStream.push(r.tokenId);
    const pushed = seq.stopMatcher.push(delta);
    this.out.push({ id: seq.id, event: { ...token, text: pushed.emit } });
    if (pushed.stopped) {
      seq.finishReason = 'stop';
      seq.stopReason = pushed.matched;
      this.finish(seq, '');
      return;
    }
    if (seq.sampler.constraint?.finished === true) {
      // The document is complete and nothing may follow it: done, as if EOS had come.
      seq.finishReason = 'stop';
      this.finish(seq, this.trailingText(seq));
      return;
    }
    const kvLength = seq.kv?.maxLength ?? 0;
    if (seq.generated >= seq.request.sampling.maxTokens || kvLength + 1 >= this.contextLength) {
      seq.finishReason = 'length';
      this.finish(seq, this.trailingText(seq));
    }
  }

  /** Text still held by the detokenizer or the stop matcher when generation ends. */
  private trailingText(seq: Sequence): string {
    const tail = seq.stopMatcher.push(seq.decodeStream.flush());
    return tail.stopped ? tail.emit : tail.emit + seq.stopMatcher.flush();
  }

  /** Ends a sequence normally (or aborted, with finishReason set by the caller). */
  finish(seq: Sequence, trailingText: string): void {
    seq.state = 'finished';
    const report = policyReport(seq, this.spec.numLayers);
    this.release(seq, this.retire(seq));
    const now = performance.now();
    const admitted = seq.admittedAt || now;
    this.out.push({
      id: seq.id,
      event: {
        type: 'done',
        finishReason: seq.finishReason ?? 'stop',
        text: trailingText,
        usage: { promptTokens: seq.request.promptTokens.length, completionTokens: seq.generated },
        stopReason: seq.stopReason,
        timings: {
          queueMs: admitted - seq.submittedAt,
          prefillMs: seq.prefillDoneAt ? seq.prefillDoneAt - admitted : 0,
          totalMs: now - seq.submittedAt,
        },
        policy: report,
        ...(seq.request.captureLogprobs ? { capturedLogprobs: concatRows(seq.captured, this.spec.vocabSize) } : {}),
        ...(seq.request.returnDropped && seq.dropped ? { dropped: seq.dropped } : {}),
        ...(seq.sampler.constraint ? { constraint: seq.sampler.constraint.report() } : {}),
      },
    });
  }

  abort(seq: Sequence): void {
    seq.finishReason = 'abort';
    this.finish(seq, '');
  }

  /** Ends a teacher-forced scoring sequence with its result. */
  finishScoring(seq: Sequence): void {
    const scored = scoreResult(seq, this.spec.vocabSize, policyReport(seq, this.spec.numLayers));
    seq.state = 'finished';
    this.release(seq);
    this.out.push({ id: seq.id, scored });
  }

  finishWithError(seq: Sequence, err: unknown): void {
    seq.state = 'finished';
    this.release(seq);
    this.fail(seq.id, err);
  }

  /** An error for a request id (also for requests refused before they became sequences). */
  fail(id: string, err: unknown): void {
    const e = err instanceof EngineError ? err : new EngineError('engine_failed', err instanceof Error ? err.message : String(err));
    this.out.push({ id, error: { code: e.code, message: e.message, field: e.field, retryAfterSeconds: e.retryAfterSeconds } });
  }

  private release(seq: Sequence, kept = false): void {
    if (!kept) seq.kv?.release();
    seq.kv = null;
    this.remove(seq);
  }
}

function concatRows(rows: readonly Float32Array[], width: number): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((r, i) => out.set(r, i * width));
  return out;
}
