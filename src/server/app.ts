import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { DENSE_MODEL, unservableReason, type ServedModel } from '../cap/expert-offload.js';
import { checkOverflowConfig } from '../cap/overflow-settings.js';
import { createRouter } from '../cap/router.js';
import { loadServingPolicies } from '../cap/serving-policies.js';
import { ShadowFidelity } from '../cap/shadow.js';
import { ConfigError } from '../config/config-overrides.js';
import type { Config } from '../config/schema.js';
import type { EngineClient } from '../engine/types.js';
import { createMetrics, type CapserveMetrics } from '../metrics/metrics.js';
import type { Policy } from '../policies/registry.js';
import { createAuthCheck } from './auth.js';
import { recordError, type ServerContext } from './context.js';
import { ApiError, toApiError } from './errors.js';
import { Inflight } from './inflight.js';
import { registerChatCompletions } from './routes/chat-completions.js';
import { registerCompletions } from './routes/completions.js';
import { registerHealthAndMetrics } from './routes/health.js';
import { registerModels } from './routes/models.js';
import { registerPlayground, loadPlaygroundAssets, playgroundEnabled, playgroundPaths } from './routes/playground.js';
import { registerPolicies } from './routes/policies.js';
import { registerResponsesHttp } from './routes/responses-http.js';
import { registerResponsesWebsocket } from './routes/responses-ws.js';
import { registerTokenize } from './routes/tokenize.js';
import { withRequestSerializer } from './request-log.js';

export interface BuildAppOptions {
  readonly engine: EngineClient;
  readonly config: Config;
  /** The configured policies; absent: loaded from config.policies.dir (with the config's param overrides). */
  readonly policies?: ReadonlyMap<string, Policy>;
  /** Dense or MoE and the expert-offload policy the engine runs (see cap/expert-offload.ts); default: dense. */
  readonly servedModel?: ServedModel;
  /** fastify's logger option; default off (tests). Prompts and completions are never logged. */
  readonly logger?: FastifyServerOptions['logger'];
  /** Where the built playground lives; default dist/playground (tests point elsewhere). */
  readonly playgroundDir?: string;
}

/** What the serve command needs beyond the FastifyInstance: draining on SIGTERM. */
export interface CapserveHandle {
  readonly metrics: CapserveMetrics;
  readonly inflight: Inflight;
  readonly shadow: ShadowFidelity;
  /** From now on new requests get 503 shutting_down; running ones continue. */
  beginShutdown(): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    capserve: CapserveHandle;
  }
}

/**
 * The OpenAI-compatible app, not listening (tests use app.inject). Throws
 * PolicyError / ConfigError when the policies or the routing section are
 * wrong, so a misconfigured server never starts.
 */
export function buildApp(options: BuildAppOptions): FastifyInstance {
  const { engine, config } = options;
  const policies = options.policies ?? loadServingPolicies(config);
  const servedModel = options.servedModel ?? DENSE_MODEL;
  const router = createRouter(config.routing, policies, { unservable: (p) => unservableReason(p, servedModel) });
  const overflowErrors = checkOverflowConfig(config, policies);
  if (overflowErrors.length > 0) throw new ConfigError(`invalid overflow settings:\n  ${overflowErrors.join('\n  ')}`);
  const app = Fastify({
    logger: withRequestSerializer(options.logger),
    bodyLimit: config.server.bodyLimitBytes,
    // Our own hook answers 503 in the OpenAI error shape while draining.
    return503OnClosing: false,
  });
  const metrics = createMetrics({
    policy: config.routing.defaultPolicy,
    // Expert counters are engine-wide; they belong to the expert-offload policy the engine runs.
    expertPolicy: servedModel.expertOffloadPolicy ?? config.routing.defaultPolicy,
    snapshot: () => engine.health(),
  });
  const shadow = new ShadowFidelity(engine, metrics, config.shadow, app.log);
  const ctx: ServerContext = {
    engine,
    config,
    policies,
    servedModel,
    router,
    shadow,
    metrics,
    inflight: new Inflight(),
    log: app.log,
    shutdown: { closing: false },
  };
  app.addHook('onClose', async () => shadow.close());
  app.decorate('capserve', {
    metrics,
    inflight: ctx.inflight,
    shadow,
    beginShutdown: () => {
      ctx.shutdown.closing = true;
    },
  } satisfies CapserveHandle);

  void app.register(websocket, {
    options: { maxPayload: config.server.bodyLimitBytes },
    // Runs on app.close(): the serve command has drained running responses by then.
    preClose: async function (this: FastifyInstance) {
      const clients = [...this.websocketServer.clients];
      const closed = clients.map((client) => new Promise((resolve) => client.once('close', resolve)));
      for (const client of clients) client.close(1001, 'server shutting down');
      // A peer that never answers the close handshake must not hold shutdown for ws's 30 s timeout.
      await Promise.race([Promise.all(closed), new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
      for (const client of clients) client.terminate();
    },
  });

  const playground = playgroundEnabled(config.server) ? loadPlaygroundAssets(options.playgroundDir) : null;
  // The page and its assets hold no data; with keys set the page asks for one and sends it on API calls.
  const checkAuth = createAuthCheck(config.server.apiKeys, [...config.server.publicPaths, ...(playground !== null ? playgroundPaths(playground) : [])]);
  app.addHook('onRequest', async (request, reply) => {
    if (ctx.shutdown.closing && request.url !== '/metrics') {
      reply.header('connection', 'close');
      throw new ApiError('shutting_down', 'The server is shutting down.', { retryAfterSeconds: 5 });
    }
    checkAuth(request);
  });

  app.setErrorHandler((err, request, reply) => {
    const apiError = toApiError(err);
    // 503s are states the server logs once (loading, draining, a worker restart), not per request.
    if (apiError.statusCode >= 500 && apiError.statusCode !== 503) {
      request.log.error({ err }, 'request failed');
    }
    recordError(ctx, apiError);
    if (apiError.retryAfterSeconds !== null) void reply.header('retry-after', String(apiError.retryAfterSeconds));
    if (apiError.code === 'invalid_api_key') void reply.header('www-authenticate', 'Bearer');
    void reply.code(apiError.statusCode).send(apiError.toBody());
  });

  app.setNotFoundHandler((request, reply) => {
    const err = new ApiError('not_found', `No route for ${request.method} ${request.url.split('?', 1)[0] ?? ''}.`);
    recordError(ctx, err);
    void reply.code(err.statusCode).send(err.toBody());
  });

  void app.register(async (scope) => {
    registerChatCompletions(scope, ctx);
    registerCompletions(scope, ctx);
    registerModels(scope, ctx);
    registerPolicies(scope, ctx);
    registerTokenize(scope, ctx);
    registerHealthAndMetrics(scope, ctx);
    registerResponsesWebsocket(scope, ctx);
    registerResponsesHttp(scope, ctx);
    if (playground !== null) registerPlayground(scope, playground);
  });
  return app;
}
