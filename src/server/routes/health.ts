import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';
import { ApiError } from '../errors.js';

/**
 * /health answers from the engine's cached state without touching the worker,
 * so it stays fast while inference runs. /metrics is the Prometheus text format.
 */
export function registerHealthAndMetrics(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/health', async () => {
    if (ctx.shutdown.closing) throw new ApiError('shutting_down', 'The server is shutting down.', { retryAfterSeconds: 5 });
    const health = ctx.engine.health();
    if (!health.ready) throw new ApiError('not_ready', health.notReady ?? 'The model is still loading.', { retryAfterSeconds: 5 });
    return { status: 'ok', worker: health.worker ?? 'ready', worker_restarts: health.workerRestarts ?? 0 };
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await ctx.metrics.registry.metrics();
    reply.header('content-type', ctx.metrics.registry.contentType);
    return text;
  });
}
