import { Type, type Static, type TInteger, type TObject } from '@sinclair/typebox';
import { resolveBudget } from '../budget.js';
import { PolicyError } from '../errors.js';
import type { ModelSpec } from '../../model/spec.js';
import { typedParams, type EvictionMethod, type ParamIssue, type PolicyParams, type PositionMode, type Protect, type RequestNeeds } from '../method-types.js';
import { EvictionRuntime } from './eviction-runtime.js';
import type { CapProfile, LayerKvView, StatsNeeds } from '../types.js';

/** Eviction bounds memory and keeps decode latency flat (C, P) and pays in accuracy. */
export const EVICTION_CAP: CapProfile = Object.freeze({ favors: Object.freeze(['C', 'P'] as const), costs: 'A' as const });

/** kvpress's DecodingPress as data: the engine re-applies the method every N decode steps. */
export function CompressEverySchema(defaultValue: number): TInteger {
  return Type.Integer({
    minimum: 0,
    default: defaultValue,
    description: 'Re-apply eviction every N decode steps so generation runs past the budget; 0: only at the end of prefill.',
  });
}

/** The params every eviction method has. */
export interface EvictionParams {
  readonly budget: number;
  readonly compressEvery: number;
}

export function evictionParams(params: PolicyParams): EvictionParams {
  const { budget, compressEvery } = params;
  if (typeof budget !== 'number' || typeof compressEvery !== 'number') {
    throw new PolicyError('eviction params must hold numeric budget and compressEvery (validate the policy first)');
  }
  return { budget, compressEvery };
}

export interface EvictionDef<S extends TObject> {
  readonly method: string;
  readonly rule: string;
  readonly schema: S;
  readonly positions: PositionMode;
  readonly needs: (params: Static<S>) => StatsNeeds;
  readonly score: (view: LayerKvView, params: Static<S>) => Float32Array;
  readonly protect: (params: Static<S>, keep: number) => Protect;
  /** Default: the budget resolved against the tokens covered so far, the same for every layer. */
  readonly layerKeep?: (params: Static<S>, view: LayerKvView, contextTokens: number) => number;
  readonly check?: (params: Static<S>) => readonly ParamIssue[];
}

/** Erases a method's param type once, here, so the registry can list methods side by side. */
export function defineEviction<S extends TObject>(def: EvictionDef<S>): EvictionMethod {
  const p = (params: PolicyParams): Static<S> => typedParams(def.schema, params);
  const method: EvictionMethod = Object.freeze({
    method: def.method,
    kind: 'kv-eviction' as const,
    rule: def.rule,
    cap: EVICTION_CAP,
    schema: def.schema,
    positions: def.positions,
    needs: (params: PolicyParams) => ({ ...def.needs(p(params)), query: false }),
    check: (params: PolicyParams) => def.check?.(p(params)) ?? [],
    score: (view: LayerKvView, params: PolicyParams) => def.score(view, p(params)),
    protect: (params: PolicyParams, keep: number) => def.protect(p(params), keep),
    layerKeep: (params: PolicyParams, view: LayerKvView, contextTokens: number) =>
      def.layerKeep !== undefined ? def.layerKeep(p(params), view, contextTokens) : resolveBudget(evictionParams(params).budget, contextTokens),
    // Every eviction method shares one runtime: the base press.
    instantiate: (params: PolicyParams, spec: ModelSpec) => new EvictionRuntime(method, params, spec),
    // The cache stays within the budget, so the window limits the cache, not the prompt.
    request: () => EVICTION_REQUEST,
  });
  return method;
}

const EVICTION_REQUEST: RequestNeeds = Object.freeze({ segments: false, promptMayExceedWindow: true, shrink: null });

/** A statistic the method needs but the runtime did not provide. */
export function missingStat(method: string, stat: string, need: string): PolicyError {
  return new PolicyError(`${method}: the layer view has no ${stat}; the runtime must collect it (StatsNeeds.${need}) for this policy`);
}

export function checkLength(method: string, name: string, actual: number, expected: number, shape: string): void {
  if (actual !== expected) throw new PolicyError(`${method}: ${name} has ${actual} values, expected ${shape} = ${expected}`);
}
