import type { FastifyBaseLogger } from 'fastify';
import type { ServedModel } from '../cap/expert-offload.js';
import type { Router } from '../cap/router.js';
import type { ShadowFidelity } from '../cap/shadow.js';
import type { Config } from '../config/schema.js';
import type { EngineClient } from '../engine/types.js';
import type { CapserveMetrics } from '../metrics/metrics.js';
import type { Policy } from '../policies/registry.js';
import { ApiError } from './errors.js';
import type { Inflight } from './inflight.js';

/** What every route needs; one per app. */
export interface ServerContext {
  readonly engine: EngineClient;
  readonly config: Config;
  /** Every configured policy, in configuration order ('full' first). */
  readonly policies: ReadonlyMap<string, Policy>;
  /** Dense or MoE, and the expert-offload policy the engine runs. */
  readonly servedModel: ServedModel;
  readonly router: Router;
  readonly shadow: ShadowFidelity;
  readonly metrics: CapserveMetrics;
  readonly inflight: Inflight;
  readonly log: FastifyBaseLogger;
  /** Set on SIGTERM: new requests get 503 while running ones finish. */
  readonly shutdown: { closing: boolean };
}

/** Inference routes answer 503 with Retry-After until the model is loaded. */
export function ensureReady(ctx: ServerContext): void {
  const health = ctx.engine.health();
  if (!health.ready) {
    throw new ApiError('not_ready', health.notReady ?? 'The model is still loading; retry shortly.', { retryAfterSeconds: 5 });
  }
}

export function recordError(ctx: ServerContext, error: ApiError, policy: string = ctx.config.routing.defaultPolicy): void {
  ctx.metrics.requestErrors.inc({ policy, code: error.code });
}
