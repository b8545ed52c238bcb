import { existsSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadServingPolicies } from '../../src/cap/serving-policies.js';
import { loadConfig, parseOverride } from '../../src/config/load-config.js';
import type { Config } from '../../src/config/schema.js';
import { startLocalEngine, type LocalEngine, type LocalEngineOptions } from '../../src/engine/local-engine.js';
import { buildApp } from '../../src/server/app.js';
import { resolveChatTemplateFallback } from '../../src/server/chat-template-fallback.js';
import { localEngineOptions, readModelFacts, servedModel } from '../../src/server/engine-options.js';

/** The real tiny Llama (stories260K) in /work/shared, or null when the shared data is absent. */
export function storiesModelDir(): string | null {
  const shared = process.env['CAPSERVE_SHARED'] ?? path.resolve(process.cwd(), '../shared');
  const dir = path.join(shared, 'models', 'stories260K');
  return existsSync(path.join(dir, 'config.json')) ? dir : null;
}

export interface GoldenPrompt {
  readonly name: string;
  readonly text: string;
  readonly input_ids: number[];
  readonly greedy_ids: number[];
  readonly greedy_text: string;
  /** decode(input_ids + greedy_ids): what prompt text + completion text must read. */
  readonly full_text: string;
}

export function goldenPrompts(modelDir: string): GoldenPrompt[] {
  return (JSON.parse(readFileSync(path.join(modelDir, 'golden.json'), 'utf8')) as { prompts: GoldenPrompt[] }).prompts;
}

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly engine: LocalEngine;
  readonly config: Config;
  readonly baseUrl: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Starts the real engine on a model (stories260K unless told) and the real
 * server on a free port, wired as `capserve serve` wires them (engine options
 * from the config: compression scorer, expert offload for MoE models). ChatML
 * fallback so chat works on template-less models. `sets` are `--set` style
 * config overrides.
 */
export async function startServer(
  modelDir: string,
  sets: readonly string[] = [],
  options: { cacheDir?: string; engine?: Pick<LocalEngineOptions, 'faultInjection' | 'restartDelayMs' | 'onWarning' | 'onProgress'> } = {},
): Promise<RunningServer> {
  const config = loadConfig({ overrides: [`model.dir=${modelDir}`, 'model.chatTemplateFallback=chatml', ...sets].map(parseOverride) });
  const fallback = resolveChatTemplateFallback(config.model.chatTemplateFallback);
  const policies = loadServingPolicies(config);
  const model = servedModel(config, policies, readModelFacts(modelDir));
  const engine = startLocalEngine({
    ...localEngineOptions(config, policies, model, {
      chatTemplateFallback: fallback,
      threads: 1,
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
    }),
    ...options.engine,
  });
  await engine.ready;
  const app = buildApp({ engine, config, policies, servedModel: model });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return {
    app,
    engine,
    config,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    async close() {
      await app.close();
      await engine.close();
    },
  };
}

export async function waitFor(check: () => boolean, timeoutMs = 3000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
