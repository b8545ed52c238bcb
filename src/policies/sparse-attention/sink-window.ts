// A-shape / sink-window, applied as the prefill mask the step builder writes (StreamingLLM's pattern as a prefill mask, MInference's "A-shape" head): each query attends causally to the first sinkTokens positions and the windowTokens most recent ones (itself included); decoding stays dense and the cache stays whole.
import { Type, type Static } from '@sinclair/typebox';
import { PolicyError } from '../errors.js';
import { typedParams } from '../method-types.js';
import type { Policy } from '../policy.js';
import { PlainRuntime, type AttentionRestriction, type PrefillShape, type RuntimeReport } from '../runtime.js';
import { defineSparse } from './common.js';

export const SinkWindowParams = Type.Object(
  {
    sinkTokens: Type.Integer({ minimum: 0, default: 4, description: 'First positions every query sees (StreamingLLM uses 4).' }),
    windowTokens: Type.Integer({ minimum: 1, default: 1024, description: 'Most recent positions each query sees, its own included.' }),
  },
  { additionalProperties: false },
);
export type SinkWindowParams = Static<typeof SinkWindowParams>;

/** A sink-window policy's params, typed. */
export function sinkWindowParams(policy: Policy): SinkWindowParams {
  if (policy.method !== 'sink-window')
    throw new PolicyError(`policy ${JSON.stringify(policy.name)} (method ${JSON.stringify(policy.method)}) is not a sink-window policy`);
  return typedParams(SinkWindowParams, policy.params);
}

/** Whether a query at `queryPos` may attend to a key at `keyPos`. */
export function allowed(queryPos: number, keyPos: number, params: SinkWindowParams): boolean {
  return keyPos <= queryPos && (keyPos < params.sinkTokens || queryPos - keyPos < params.windowTokens);
}

/** The runtime: the plain graph, prefill restricted to sinks and the recent window (never batched with unrestricted prompts). */
class SinkWindowRuntime extends PlainRuntime {
  override readonly batchablePrefill: boolean = false;
  override readonly prefixCacheBypass: string | null = "sink-window prefill attends only sinks and a window, so its prefix KV is not full attention's";
  private readonly restrict: AttentionRestriction;

  constructor(private readonly params: SinkWindowParams) {
    super('sparse-attention');
    this.restrict = {
      allowed: (queryPos, keyPos) => allowed(queryPos, keyPos, params),
      reachable: (firstQueryPos, keyPos) => keyPos < params.sinkTokens || firstQueryPos - keyPos < params.windowTokens,
    };
  }

  override prefillShape(_lastChunk: boolean): PrefillShape {
    return { attnWindow: null, restrict: this.restrict };
  }

  override report(): RuntimeReport {
    return { ...super.report(), details: { sinkTokens: this.params.sinkTokens, windowTokens: this.params.windowTokens } };
  }
}

export const sinkWindow = defineSparse({
  method: 'sink-window',
  rule: 'During prefill each query attends only to the first sinkTokens positions and the windowTokens most recent ones (A-shape); decoding is dense and nothing is evicted.',
  cap: Object.freeze({ favors: Object.freeze(['C', 'P'] as const), costs: 'A' as const }),
  schema: SinkWindowParams,
  needs: () => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: false }),
  instantiate: (params) => new SinkWindowRuntime(params),
});
