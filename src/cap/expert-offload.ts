/**
 * Expert offload and elastic weights are chosen when the model loads, not per
 * request: the engine opens an MoE model's expert store with one expert-offload
 * policy's params, and a dense model's shard store (STI) with one weight-elastic
 * policy's params. This file decides which policies those are, and which
 * configured policies a request may therefore be served with.
 */
import type { Config } from '../config/schema.js';
import type { Policy } from '../policies/registry.js';

/** What the server knows about the served model before it loads. */
export interface ServedModel {
  /** Mixture-of-experts (mixtral, qwen2_moe, qwen3_moe): experts can be offloaded. */
  readonly moe: boolean;
  /** The expert-offload policy the engine runs (MoE models only); null: dense, or the engine's defaults. */
  readonly expertOffloadPolicy: string | null;
  /** The weight-elastic policy the engine runs (dense models, when it is the default policy); absent or null: none. */
  readonly weightElasticPolicy?: string | null;
}

export const DENSE_MODEL: ServedModel = Object.freeze({ moe: false, expertOffloadPolicy: null });

/** The policy name that ships with capserve and is used for MoE models when the default policy is not an expert-offload one. */
export const EDGEMOE_POLICY_NAME = 'edgemoe';

/**
 * For an MoE model: the default policy if it is kind expert-offload, else the
 * policy named `edgemoe` if loaded (and of that kind), else null (the engine's
 * defaults). Dense models: null.
 */
export function expertOffloadPolicy(config: Config, policies: ReadonlyMap<string, Policy>, moe: boolean): Policy | null {
  if (!moe) return null;
  const byDefault = policies.get(config.routing.defaultPolicy);
  if (byDefault?.kind === 'expert-offload') return byDefault;
  const edgemoe = policies.get(EDGEMOE_POLICY_NAME);
  return edgemoe?.kind === 'expert-offload' ? edgemoe : null;
}

/**
 * For a dense model: the default policy when it is kind weight-elastic (elastic
 * weights replace the model's weights for every request, so only the operator's
 * default turns them on). MoE models: null.
 */
export function weightElasticPolicy(config: Config, policies: ReadonlyMap<string, Policy>, moe: boolean): Policy | null {
  if (moe) return null;
  const byDefault = policies.get(config.routing.defaultPolicy);
  return byDefault?.kind === 'weight-elastic' ? byDefault : null;
}

/** Why `policy` cannot serve requests on this model; null when it can. */
export function unservableReason(policy: Policy, model: ServedModel): string | null {
  if (policy.kind === 'weight-elastic') {
    if (model.moe) return `'${policy.name}' shards the weights of dense models, and the served model is a mixture of experts (use expert offload)`;
    if (policy.name !== (model.weightElasticPolicy ?? null)) {
      return `elastic weights are set when the model loads and this server runs ${model.weightElasticPolicy ? `'${model.weightElasticPolicy}'` : 'the full-precision weights'}; '${policy.name}' cannot be chosen per request (make it the default policy: --policy ${policy.name})`;
    }
    return null;
  }
  if (policy.kind !== 'expert-offload') return null;
  if (!model.moe) return `'${policy.name}' offloads the experts of mixture-of-experts models, and the served model is dense (it has no experts)`;
  if (policy.name !== model.expertOffloadPolicy) {
    const running = model.expertOffloadPolicy === null ? "the engine's default expert-offload settings" : `'${model.expertOffloadPolicy}'`;
    return `expert offload is set when the model loads, and this server runs ${running}; '${policy.name}' cannot be chosen per request`;
  }
  return null;
}
