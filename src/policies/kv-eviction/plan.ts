/**
 * The engine's entry point for one eviction of one layer: the method's scores,
 * the layer's budget and protection, the shared selector.
 */
import { PolicyError } from '../errors.js';
import { getMethod } from '../methods.js';
import type { EvictionMethod } from '../method-types.js';
import type { Policy } from '../policy.js';
import type { KeepPlan, LayerKvView } from '../types.js';
import { planWithMethod } from './eviction-runtime.js';

export function evictionMethodOf(policy: Policy): EvictionMethod {
  const method = getMethod(policy.method);
  if (method === undefined || method.kind !== 'kv-eviction') {
    throw new PolicyError(`policy ${JSON.stringify(policy.name)} (method ${JSON.stringify(policy.method)}) is not a kv-eviction policy`);
  }
  return method;
}

/** Entries this layer keeps after an eviction when the request has covered `contextTokens` tokens. */
export function layerKeep(policy: Policy, view: LayerKvView, contextTokens: number): number {
  return Math.min(view.length, evictionMethodOf(policy).layerKeep(policy.params, view, contextTokens));
}

/**
 * Which entries each KV head keeps, ascending; null when the layer already fits
 * its budget (nothing to evict, no statistics read). Called at the end of
 * prefill and whenever shouldCompress(step, params) says so.
 *
 * contextTokens: tokens the request has covered so far (prompt + generated).
 * A ratio budget keeps that share of them; a token count keeps the cache flat.
 */
export function planLayerEviction(policy: Policy, view: LayerKvView, contextTokens: number): KeepPlan | null {
  return planWithMethod(evictionMethodOf(policy), policy.params, view, contextTokens);
}
