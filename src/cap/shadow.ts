/**
 * Shadow fidelity: a fraction of the requests served by a non-full policy
 * are re-scored against the full-cache model by teacher forcing, after their
 * response has gone out, and the per-step KL divergence and top-1 agreement
 * become metrics labelled by policy.
 *
 * Cost is kept small on purpose: the decision is made up front (only sampled
 * requests ask the engine to capture their log-softmax rows, and only for the
 * first `maxTokens` steps), only those steps are compared (one teacher-forced
 * prefill of prompt + those steps, returning just their rows), one re-score
 * runs at a time, and at most `maxQueued` wait; the rest are dropped and
 * counted. Engine errors are counted, never thrown.
 *
 * The reference is the prompt the request handed to the engine. For context
 * compression that is the original, uncompressed prompt (the engine compresses
 * it), so a compressed request's KL measures what compression cost against the
 * whole context. A reference that would not fit the model's window (a prompt an
 * overflow mode compressed or served by eviction) is not sampled: the full
 * model has no valid distribution there. Expert offload is not sampled either:
 * the full-cache re-score runs on the same offloaded experts, so it is no
 * reference for what offloading costs.
 */
import { randomUUID } from 'node:crypto';
import type { EngineClient } from '../engine/types.js';
import type { CapserveMetrics, ShadowOutcome } from '../metrics/metrics.js';
import { FULL_POLICY_NAME, type Policy } from '../policies/registry.js';
import { fidelity } from './fidelity.js';

export interface ShadowOptions {
  /** 0..1; counter-based, so 1 shadows every eligible request and 0.25 exactly every fourth. */
  readonly sampleRate: number;
  /** Re-scores waiting or running at once. */
  readonly maxQueued: number;
  /** Generated steps compared per request. */
  readonly maxTokens: number;
  /** Requests allowed to generate more than this are not sampled (capture memory grows with max_tokens x vocabulary). */
  readonly maxCaptureTokens: number;
  /** Shadow expert-offload requests too (their reference keeps every expert resident at fp32). */
  readonly expertOffload?: boolean;
}

/** What a finished sampled request hands over. */
export interface ShadowSubmission {
  readonly policy: string;
  readonly promptTokens: readonly number[];
  /** Generated token ids, in order. */
  readonly generated: readonly number[];
  /** The engine's captured log-softmax rows, [generated.length, vocab]. */
  readonly rows: Float32Array;
  /** 'resident': compare against every expert resident at fp32 (expert offload). */
  readonly reference?: 'resident';
}

interface Job {
  readonly policy: string;
  /** Expert offload is re-scored against the all-resident fp32 model, everything else against the full cache. */
  readonly reference?: 'resident';
  readonly tokens: readonly number[];
  readonly from: number;
  readonly steps: number;
  readonly vocab: number;
  readonly rows: Float32Array;
}

/** One sampled request's claim on a re-score: handed over once, or given up (aborted, failed). */
export interface ShadowTicket {
  submit(generated: readonly number[], rows: Float32Array): void;
  /** No-op after submit: lets every exit path give the ticket up without double counting. */
  skip(): void;
}

export interface ShadowLogger {
  warn(details: Record<string, unknown>, message: string): void;
}

export class ShadowFidelity {
  private readonly credit = new Map<string, number>();
  private readonly queue: Job[] = [];
  private running: Promise<void> | null = null;
  private readonly controller = new AbortController();
  private readonly idPrefix = `shadow-${randomUUID().slice(0, 8)}`;
  private sequence = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly engine: Pick<EngineClient, 'score'>,
    private readonly metrics: CapserveMetrics,
    private readonly options: ShadowOptions,
    private readonly log: ShadowLogger | null = null,
  ) {}

  /** Re-scores waiting or running. */
  get pending(): number {
    return this.queue.length + (this.running !== null ? 1 : 0);
  }

  /** Generated steps a sampled request must capture (GenerateRequest.captureLogprobs). */
  get captureSteps(): number {
    return this.options.maxTokens;
  }

  /**
   * Called when a request starts: should it capture its rows for a later
   * re-score? Never for the full-cache baseline (kind 'none') or expert
   * offload, nor when the reference (prompt + compared steps) would not fit
   * `contextWindow`. A ticket means yes: ask the engine for captureLogprobs
   * (captureSteps) and settle the ticket at the end.
   */
  sample(policy: Policy, maxTokens: number, promptTokens: readonly number[], contextWindow = Infinity): ShadowTicket | null {
    if (this.closed || policy.kind === 'none' || this.options.sampleRate <= 0 || maxTokens > this.options.maxCaptureTokens) return null;
    // Expert offload and elastic weights change the weights every request runs on: their reference is the
    // full-precision model held resident, which a deployment that offloads may not want to hold.
    const resident = policy.kind === 'expert-offload' || policy.kind === 'weight-elastic';
    if (resident && this.options.expertOffload !== true) return null;
    if (promptTokens.length + Math.min(maxTokens, this.options.maxTokens) > contextWindow) return null;
    const credit = (this.credit.get(policy.name) ?? 0) + this.options.sampleRate;
    if (credit < 1 - 1e-9) {
      this.credit.set(policy.name, credit);
      return null;
    }
    this.credit.set(policy.name, credit - 1);
    if (this.pending >= this.options.maxQueued) {
      // Already full: do not make the engine capture rows that would be dropped anyway.
      this.count(policy.name, 'dropped');
      return null;
    }
    let settled = false;
    return {
      submit: (generated, rows) => {
        if (settled) return;
        settled = true;
        this.submit({ policy: policy.name, promptTokens, generated, rows, ...(resident ? { reference: 'resident' as const } : {}) });
      },
      skip: () => {
        if (settled) return;
        settled = true;
        if (!this.closed) this.count(policy.name, 'skipped');
      },
    };
  }

  /** Hands over a finished sampled request; call it after the response is sent. Returns at once. */
  submit(s: ShadowSubmission): void {
    if (this.closed) return;
    const generatedCount = s.generated.length;
    if (generatedCount === 0 || s.promptTokens.length === 0) {
      this.count(s.policy, 'skipped');
      return;
    }
    const vocab = s.rows.length / generatedCount;
    if (!Number.isInteger(vocab) || vocab <= 0) {
      this.log?.warn({ policy: s.policy, rows: s.rows.length, generated: generatedCount }, 'shadow fidelity: captured rows do not match the generated tokens');
      this.count(s.policy, 'failed');
      return;
    }
    if (this.pending >= this.options.maxQueued) {
      this.count(s.policy, 'dropped');
      return;
    }
    const steps = Math.min(generatedCount, this.options.maxTokens);
    // Rows for positions P-1 .. P+steps-2 predict generated[0 .. steps-1]; the last one is only a target.
    this.queue.push({
      policy: s.policy,
      ...(s.reference ? { reference: s.reference } : {}),
      tokens: [...s.promptTokens, ...s.generated.slice(0, steps)],
      from: s.promptTokens.length - 1,
      steps,
      vocab,
      rows: s.rows.slice(0, steps * vocab),
    });
    setImmediate(() => this.pump());
  }

  /** Resolves when nothing is queued or running (tests, shutdown). */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops the queue and aborts the running re-score. */
  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.controller.abort();
    if (this.running === null) this.wake();
  }

  private count(policy: string, outcome: ShadowOutcome): void {
    this.metrics.shadowRequests.inc({ policy, outcome });
  }

  private wake(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private pump(): void {
    if (this.running !== null) return;
    const job = this.queue.shift();
    if (job === undefined || this.closed) {
      this.wake();
      return;
    }
    this.running = this.run(job).finally(() => {
      this.running = null;
      this.pump();
    });
  }

  private async run(job: Job): Promise<void> {
    try {
      const result = await this.engine.score(
        {
          id: `${this.idPrefix}-${++this.sequence}`,
          tokens: job.tokens,
          policy: FULL_POLICY_NAME,
          from: job.from,
          mode: 'rows',
          // Expert offload is measured against every expert resident at fp32.
          ...(job.reference ? { reference: job.reference } : {}),
        },
        this.controller.signal,
      );
      if (result.rows === null || result.vocabSize !== job.vocab || result.rows.length !== job.steps * job.vocab) {
        this.log?.warn(
          { policy: job.policy, vocab: result.vocabSize, expectedVocab: job.vocab, rows: result.rows?.length ?? null, steps: job.steps },
          'shadow fidelity: the full-cache rows do not line up with the captured ones',
        );
        this.count(job.policy, 'failed');
        return;
      }
      const f = fidelity(result.rows, job.rows, job.vocab, job.steps);
      const labels = { policy: job.policy };
      this.metrics.shadowKlDivergence.observe(labels, f.kl);
      this.metrics.shadowTop1Agreement.observe(labels, f.top1);
      this.count(job.policy, 'scored');
    } catch (err) {
      if (this.closed) return;
      this.log?.warn({ policy: job.policy, err }, 'shadow fidelity: re-scoring failed');
      this.count(job.policy, 'failed');
    }
  }
}
