/**
 * The policy registry: every method (kind, rule, CAP profile, params schema,
 * runtime needs), the policy files that configure them, and what
 * `GET /v1/policies` shows.
 */
import type { TObject } from '@sinclair/typebox';
import { METHODS } from './methods.js';
import type { PolicyParams, RuntimeNeeds } from './method-types.js';
import type { Policy } from './policy.js';
import type { CapProfile, PolicyKind } from './types.js';

export { evictionMethods, getMethod, METHODS, sparseAttentionMethods } from './methods.js';
export { FULL_POLICY, FULL_POLICY_NAME, KEBAB_CASE, loadPolicies, parsePolicyFile } from './policy-file.js';
export type { Policy } from './policy.js';

export interface MethodDescription {
  readonly method: string;
  readonly kind: PolicyKind;
  readonly rule: string;
  readonly cap: CapProfile;
  /** JSON Schema of the params (defaults, ranges, descriptions). */
  readonly params: TObject;
}

export function describeMethods(): MethodDescription[] {
  return METHODS.map((m) => ({ method: m.method, kind: m.kind, rule: m.rule, cap: m.cap, params: m.schema }));
}

export interface PolicyDescription {
  readonly name: string;
  readonly kind: PolicyKind;
  readonly method: string;
  readonly params: PolicyParams;
  readonly cap: CapProfile;
}

/** The `data` of `GET /v1/policies`: plain JSON, in configuration order. */
export function describePolicies(policies: Iterable<Policy> | ReadonlyMap<string, Policy>): PolicyDescription[] {
  const list = isMap(policies) ? [...policies.values()] : [...policies];
  return list.map((p) => ({
    name: p.name,
    kind: p.kind,
    method: p.method,
    params: { ...p.params },
    cap: { favors: [p.cap.favors[0], p.cap.favors[1]], costs: p.cap.costs },
  }));
}

function isMap(x: Iterable<Policy> | ReadonlyMap<string, Policy>): x is ReadonlyMap<string, Policy> {
  return typeof (x as Partial<ReadonlyMap<string, Policy>>).get === 'function';
}

/** What the runtime must collect so every given policy can run: the union of their needs (the widest window). */
export function mergeNeeds(policies: Iterable<Policy>): RuntimeNeeds {
  let accumulatedAttention = false;
  let observationWindow = 0;
  let lastQueryAttention = false;
  let query = false;
  for (const p of policies) {
    accumulatedAttention ||= p.needs.accumulatedAttention;
    observationWindow = Math.max(observationWindow, p.needs.observationWindow);
    lastQueryAttention ||= p.needs.lastQueryAttention;
    query ||= p.needs.query;
  }
  return { accumulatedAttention, observationWindow, lastQueryAttention, query };
}
