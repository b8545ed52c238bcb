/**
 * Every method capserve implements, from easy to hard (kvpress's registry
 * order): the rule, CAP profile, params schema and runtime needs of each live
 * in its own file; this list is the one place they are enumerated.
 */
import { full } from './full.js';
import { h2o } from './kv-eviction/h2o.js';
import { knorm } from './kv-eviction/knorm.js';
import { pyramidkv } from './kv-eviction/pyramidkv.js';
import { snapkv } from './kv-eviction/snapkv.js';
import { streamingLlm } from './kv-eviction/streaming-llm.js';
import { tova } from './kv-eviction/tova.js';
import type { ModelSpec } from '../model/spec.js';
import { PolicyError } from './errors.js';
import type { EvictionMethod, MethodDefinition, RequestNeeds, SparseAttentionMethod } from './method-types.js';
import type { Policy } from './policy.js';
import type { PolicyRuntime } from './runtime.js';
import { kivi } from './kv-quantization/kivi.js';
import { quest } from './sparse-attention/quest.js';
import { sinkWindow } from './sparse-attention/sink-window.js';
import { COMPRESSION_METHODS } from './compression/index.js';
import { EDGEMOE_METHOD } from './expert-offload/edgemoe.js';
import { STI_METHOD } from './weight-elastic/sti.js';

export const METHODS: readonly MethodDefinition[] = Object.freeze([
  full,
  streamingLlm,
  knorm,
  h2o,
  tova,
  snapkv,
  pyramidkv,
  sinkWindow,
  quest,
  kivi,
  ...COMPRESSION_METHODS,
  EDGEMOE_METHOD,
  STI_METHOD,
]);

const BY_NAME: ReadonlyMap<string, MethodDefinition> = new Map(METHODS.map((m) => [m.method, m]));

export function getMethod(method: string): MethodDefinition | undefined {
  return BY_NAME.get(method);
}

export function evictionMethods(): EvictionMethod[] {
  return METHODS.filter((m): m is EvictionMethod => m.kind === 'kv-eviction');
}

export function sparseAttentionMethods(): SparseAttentionMethod[] {
  return METHODS.filter((m): m is SparseAttentionMethod => m.kind === 'sparse-attention');
}

function methodOf(policy: Pick<Policy, 'name' | 'method'>): MethodDefinition {
  const m = BY_NAME.get(policy.method);
  if (m === undefined) throw new PolicyError(`policy ${JSON.stringify(policy.name)} names an unknown method ${JSON.stringify(policy.method)}`);
  return m;
}

/** One sequence's runtime for a configured policy; full attention without one. */
export function instantiatePolicy(policy: Policy | undefined, spec: ModelSpec): PolicyRuntime {
  return policy === undefined ? full.instantiate({}, spec) : methodOf(policy).instantiate(policy.params, spec);
}

/** What the HTTP side must send for a policy, asked of its method. */
export function requestNeeds(policy: Policy): RequestNeeds {
  return methodOf(policy).request(policy.params);
}
