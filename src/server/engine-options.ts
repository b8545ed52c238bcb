/**
 * What the serve command (and the integration tests) start the engine with,
 * from the config: the model, limits, the compression scorer, and for MoE
 * models the expert-offload policy's params. The model's config.json is read
 * before anything loads, so a policy that cannot serve the model stops the
 * server at start, not at the first request.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expertOffloadPolicy, weightElasticPolicy, type ServedModel } from '../cap/expert-offload.js';
import { ConfigError } from '../config/config-overrides.js';
import type { Config } from '../config/schema.js';
import type { LocalEngineOptions } from '../engine/local-engine.js';
import { parseModelSpec } from '../model/hf-config.js';
import type { Architecture } from '../model/spec.js';
import type { Policy } from '../policies/registry.js';

export interface ModelFacts {
  readonly architecture: Architecture;
  readonly moe: boolean;
}

/** The architecture of the model in `dir`; null when it has no config.json yet (the default model, generated on first start). */
export function readModelFacts(dir: string): ModelFacts | null {
  const file = path.join(path.resolve(dir), 'config.json');
  if (!existsSync(file)) return null;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${file}: cannot read the model's config: ${(err as Error).message}`);
  }
  const spec = parseModelSpec(json, null, file);
  return { architecture: spec.architecture, moe: spec.moe !== undefined };
}

/** The served model as routing sees it; no facts yet means the default model, which is dense. */
export function servedModel(config: Config, policies: ReadonlyMap<string, Policy>, facts: ModelFacts | null): ServedModel {
  const moe = facts?.moe ?? false;
  return {
    moe,
    expertOffloadPolicy: expertOffloadPolicy(config, policies, moe)?.name ?? null,
    weightElasticPolicy: weightElasticPolicy(config, policies, moe)?.name ?? null,
  };
}

export interface EngineExtras {
  readonly chatTemplateFallback: string | null;
  readonly threads?: number;
  readonly cacheDir?: string;
  readonly onProgress?: (message: string) => void;
  readonly onWarning?: (message: string) => void;
}

export function localEngineOptions(config: Config, policies: ReadonlyMap<string, Policy>, model: ServedModel, extras: EngineExtras): LocalEngineOptions {
  const offload = model.expertOffloadPolicy === null ? undefined : policies.get(model.expertOffloadPolicy);
  const elastic = model.weightElasticPolicy == null ? undefined : policies.get(model.weightElasticPolicy);
  const threads = extras.threads ?? (config.engine.threads > 0 ? config.engine.threads : undefined);
  return {
    modelDir: config.model.dir,
    ...(config.model.servedModelName !== null ? { servedModelName: config.model.servedModelName } : {}),
    ...(config.model.contextLength !== undefined ? { contextLength: config.model.contextLength } : {}),
    ...(extras.chatTemplateFallback !== null ? { chatTemplateFallback: extras.chatTemplateFallback } : {}),
    ...(threads !== undefined ? { threads } : {}),
    ...(extras.cacheDir !== undefined ? { cacheDir: extras.cacheDir } : {}),
    weightDtype: config.model.weightDtype,
    ...(config.model.quantBlockSize !== null ? { quantBlockSize: config.model.quantBlockSize } : {}),
    maxConcurrent: config.server.maxConcurrent,
    maxQueue: config.server.maxQueue,
    kvBudgetBytes: config.memory.kvBudgetBytes,
    kvDtype: config.memory.kvDtype,
    threadSpinning: config.engine.threadSpinning,
    maxTokensPerStep: config.engine.maxTokensPerStep,
    stepTargetMs: config.engine.stepTargetMs,
    prefillChunk: config.engine.prefillChunk,
    prefixCache: config.engine.prefixCache.enabled
      ? { blockTokens: config.engine.prefixCache.blockTokens, maxBytes: Math.floor(config.memory.kvBudgetBytes * config.engine.prefixCache.budgetShare) }
      : null,
    ...(config.compression.scorerModelDir !== null ? { scorerModelDir: config.compression.scorerModelDir } : {}),
    // An MoE model with no expert-offload policy configured gets the engine's defaults (edgemoe's).
    ...(model.moe && offload !== undefined ? { expertOffload: offload.params } : {}),
    ...(elastic !== undefined && !model.moe ? { weightElastic: elastic.params } : {}),
    ...(extras.onProgress !== undefined ? { onProgress: extras.onProgress } : {}),
    ...(extras.onWarning !== undefined ? { onWarning: extras.onWarning } : {}),
  };
}
