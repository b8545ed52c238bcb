import type { FinishReason } from '../engine/types.js';
import type { CapserveMetrics } from './metrics.js';

/**
 * Times one generated sequence (one choice of a request) from the moment the
 * request arrived. Timestamps come from performance.now() in milliseconds.
 */
export class SequenceTimer {
  private lastTokenAt: number | null = null;
  private finished = false;

  constructor(
    private readonly metrics: CapserveMetrics,
    private readonly policy: string,
    private readonly arrivedAt: number,
  ) {}

  token(now: number = performance.now()): void {
    const labels = { policy: this.policy };
    if (this.lastTokenAt === null) {
      this.metrics.timeToFirstToken.observe(labels, (now - this.arrivedAt) / 1000);
    } else {
      this.metrics.interTokenLatency.observe(labels, (now - this.lastTokenAt) / 1000);
    }
    this.lastTokenAt = now;
  }

  /** Records the outcome once; later calls are ignored. `queueMs` is the engine's, null when it did not report one (aborted). */
  done(finishReason: FinishReason, usage: { promptTokens: number; completionTokens: number }, queueMs: number | null, now: number = performance.now()): void {
    if (this.finished) return;
    this.finished = true;
    const labels = { policy: this.policy };
    if (queueMs !== null) this.metrics.requestQueueTime.observe(labels, queueMs / 1000);
    this.metrics.e2eRequestLatency.observe(labels, (now - this.arrivedAt) / 1000);
    this.metrics.promptTokens.inc(labels, usage.promptTokens);
    this.metrics.generationTokens.inc(labels, usage.completionTokens);
    this.metrics.requestSuccess.inc({ policy: this.policy, finished_reason: finishReason });
  }
}
