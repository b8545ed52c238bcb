import type { Static, TObject } from '@sinclair/typebox';
import { PLAIN_REQUEST, typedParams, type ParamIssue, type PolicyParams, type RuntimeNeeds, type SparseAttentionMethod } from '../method-types.js';
import type { ModelSpec } from '../../model/spec.js';
import type { PolicyRuntime } from '../runtime.js';
import type { CapProfile } from '../types.js';

export interface SparseDef<S extends TObject> {
  readonly method: string;
  readonly rule: string;
  readonly cap: CapProfile;
  readonly schema: S;
  readonly needs: (params: Static<S>) => RuntimeNeeds;
  readonly check?: (params: Static<S>) => readonly ParamIssue[];
  readonly instantiate: (params: Static<S>, spec: ModelSpec) => PolicyRuntime;
}

export function defineSparse<S extends TObject>(def: SparseDef<S>): SparseAttentionMethod {
  const p = (params: PolicyParams): Static<S> => typedParams(def.schema, params);
  return Object.freeze({
    method: def.method,
    kind: 'sparse-attention' as const,
    rule: def.rule,
    cap: def.cap,
    schema: def.schema,
    needs: (params: PolicyParams) => def.needs(p(params)),
    check: (params: PolicyParams) => def.check?.(p(params)) ?? [],
    instantiate: (params: PolicyParams, spec: ModelSpec) => def.instantiate(p(params), spec),
    request: () => PLAIN_REQUEST,
  });
}
