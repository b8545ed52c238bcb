import type { FastifyInstance } from 'fastify';
import { loadServingPolicies } from '../cap/serving-policies.js';
import { ConfigError, loadConfig } from '../config/load-config.js';
import type { ServedModel } from '../cap/expert-offload.js';
import type { Config } from '../config/schema.js';
import { startLocalEngine, WorkerFailure } from '../engine/local-engine.js';
import { errorLine } from '../error-line.js';
import { ensureDefaultModel } from '../model/default-model.js';
import type { Policy } from '../policies/registry.js';
import { buildApp } from './app.js';
import { exposureWarning } from './auth.js';
import { resolveChatTemplateFallback } from './chat-template-fallback.js';
import { DeferredEngine } from './deferred-engine.js';
import { localEngineOptions, readModelFacts, servedModel } from './engine-options.js';
import { parseServeArgs } from './serve-args.js';
import { prettyLogStream } from './pretty-log.js';

/**
 * `capserve serve`: listens at once (503 on /health while the model loads),
 * then loads the model. SIGTERM/SIGINT: stop accepting, let running requests
 * finish within server.shutdownGraceMs, abort the rest, exit 0.
 */
export async function runServe(argv: string[]): Promise<void> {
  const args = parseServeArgs(argv);
  const config = loadConfig({ ...(args.configFile !== undefined ? { file: args.configFile } : {}), overrides: args.overrides });
  const chatTemplateFallback = resolveChatTemplateFallback(config.model.chatTemplateFallback);
  // Bad policy files, overrides or routing stop the server here, before it listens.
  const policies = loadServingPolicies(config);
  // Dense or MoE decides which policies can serve (an expert-offload default on a dense model stops here).
  const model = servedModel(config, policies, readModelFacts(config.model.dir));
  const engine = new DeferredEngine();
  let app: FastifyInstance;
  try {
    app = buildApp({
      engine,
      config,
      policies,
      servedModel: model,
      logger: { level: process.env['CAPSERVE_LOG_LEVEL'] ?? 'info', ...(process.stdout.isTTY ? { stream: prettyLogStream(process.stdout) } : {}) },
    });
  } catch (err) {
    if (err instanceof ConfigError && args.configFile !== undefined) throw new ConfigError(`${args.configFile}: ${err.message}`);
    throw err;
  }
  app.log.info(
    { policies: [...policies.keys()], defaultPolicy: config.routing.defaultPolicy, moe: model.moe, expertOffload: model.expertOffloadPolicy },
    'policies loaded',
  );
  await app.listen({ host: config.server.host, port: config.server.port });
  const exposed = exposureWarning(config.server);
  if (exposed !== null) app.log.warn(exposed);

  let finished: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    finished = resolve;
  });
  let stopping = false;
  const stop = (reason: string, exitCode: number): void => {
    if (stopping) return;
    stopping = true;
    process.exitCode = exitCode;
    void drain(app, engine, config, reason).finally(finished);
  };
  process.once('SIGTERM', () => stop('SIGTERM', 0));
  process.once('SIGINT', () => stop('SIGINT', 0));

  // The same one line as an error before listening; the stack only at debug level.
  const failed = (err: unknown, reason: string): void => {
    process.stderr.write(errorLine(err));
    app.log.debug({ stack: err instanceof WorkerFailure ? err.workerStack : err instanceof Error ? err.stack : null }, reason);
    stop(reason, 1);
  };
  // A worker restarted after a crash that cannot reload the model leaves nothing to serve: exit, so a supervisor restarts us.
  const onReloadFailed = (err: WorkerFailure): void => failed(err, 'model reload failure');
  void loadModel(app, engine, config, policies, model, chatTemplateFallback, onReloadFailed).catch((err: unknown) => failed(err, 'model load failure'));

  await stopped;
  // Anything still holding the loop open (a stuck worker) must not keep a stopped server alive.
  setTimeout(() => process.exit(), 2_000).unref();
}

async function loadModel(
  app: FastifyInstance,
  engine: DeferredEngine,
  config: Config,
  policies: ReadonlyMap<string, Policy>,
  model: ServedModel,
  chatTemplateFallback: string | null,
  onReloadFailed: (err: WorkerFailure) => void,
): Promise<void> {
  const onProgress = (message: string): void => app.log.info(message);
  const onWarning = (message: string): void => app.log.warn(message);
  await ensureDefaultModel(config.model.dir, onProgress);
  // Routing was checked against a dense model when the directory had no config.json yet.
  if (readModelFacts(config.model.dir)?.moe === true && !model.moe) {
    throw new Error(`${config.model.dir} holds a mixture-of-experts model that appeared after start; restart the server`);
  }
  const local = startLocalEngine(localEngineOptions(config, policies, model, { chatTemplateFallback, onProgress, onWarning }));
  engine.attach(local);
  await local.ready;
  void local.reloadFailed.then(onReloadFailed);
  app.log.info({ model: local.models()[0]?.id }, 'model ready');
}

async function drain(app: FastifyInstance, engine: DeferredEngine, config: Config, reason: string): Promise<void> {
  const { inflight } = app.capserve;
  app.log.info({ reason, inflight: inflight.size }, 'shutting down: no new requests, draining running ones');
  app.capserve.beginShutdown();
  // Stop accepting connections now; fastify's close() below would only do it after its preClose hooks.
  app.server.close();
  const grace = setTimeout(() => {
    app.log.warn({ aborted: inflight.size }, 'grace period over: aborting running requests');
    inflight.abortAll('shutdown');
  }, config.server.shutdownGraceMs);
  await inflight.idle();
  clearTimeout(grace);
  // Responses are written; idle keep-alive sockets would otherwise hold close() for their timeout.
  const closing = app.close();
  app.server.closeIdleConnections();
  await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
  app.server.closeAllConnections();
  await engine.close();
  app.log.info('stopped');
}
