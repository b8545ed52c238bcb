// A-shape / sink-window (StreamingLLM's pattern as a prefill mask, MInference's "A-shape" head): each query attends causally to the first sinkTokens positions and the windowTokens most recent ones (itself included); decoding stays dense and the cache stays whole.
import { Type, type Static } from '@sinclair/typebox';
import { PolicyError } from '../errors.js';
import { typedParams } from '../method-types.js';
import type { Policy } from '../policy.js';
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
  if (policy.method !== 'sink-window') throw new PolicyError(`policy ${JSON.stringify(policy.name)} (method ${JSON.stringify(policy.method)}) is not a sink-window policy`);
  return typedParams(SinkWindowParams, policy.params);
}

/** Whether a query at `queryPos` may attend to a key at `keyPos`. */
export function allowed(queryPos: number, keyPos: number, params: SinkWindowParams): boolean {
  return keyPos <= queryPos && (keyPos < params.sinkTokens || queryPos - keyPos < params.windowTokens);
}

/** One query's row: 1 where it may attend to keyPositions[j]. */
export function maskRow(queryPos: number, keyPositions: Int32Array, params: SinkWindowParams, out: Uint8Array = new Uint8Array(keyPositions.length)): Uint8Array {
  if (out.length < keyPositions.length) throw new PolicyError(`sink-window: out holds ${out.length} values, fewer than the ${keyPositions.length} keys`);
  const sinks = params.sinkTokens;
  const lo = queryPos - params.windowTokens;
  for (let j = 0; j < keyPositions.length; j++) {
    const k = keyPositions[j] ?? 0;
    out[j] = k <= queryPos && (k < sinks || k > lo) ? 1 : 0;
  }
  return out;
}

/**
 * The additive attention bias for a prefill chunk: [queries, keys] with 0 where
 * allowed and -Infinity where blocked (the decoder graph's attn_bias rows).
 * keyPositions covers the cached entries and the chunk itself.
 */
export function maskRows(
  queryPositions: Int32Array,
  keyPositions: Int32Array,
  params: SinkWindowParams,
  out: Float32Array = new Float32Array(queryPositions.length * keyPositions.length),
): Float32Array {
  const nk = keyPositions.length;
  if (out.length < queryPositions.length * nk) throw new PolicyError(`sink-window: out holds ${out.length} values, fewer than queries * keys = ${queryPositions.length * nk}`);
  const sinks = params.sinkTokens;
  for (let i = 0; i < queryPositions.length; i++) {
    const qp = queryPositions[i] ?? 0;
    const lo = qp - params.windowTokens;
    const base = i * nk;
    for (let j = 0; j < nk; j++) {
      const k = keyPositions[j] ?? 0;
      out[base + j] = k <= qp && (k < sinks || k > lo) ? 0 : Number.NEGATIVE_INFINITY;
    }
  }
  return out;
}

export const sinkWindow = defineSparse({
  method: 'sink-window',
  rule: 'During prefill each query attends only to the first sinkTokens positions and the windowTokens most recent ones (A-shape); decoding is dense and nothing is evicted.',
  cap: Object.freeze({ favors: Object.freeze(['C', 'P'] as const), costs: 'A' as const }),
  schema: SinkWindowParams,
  needs: () => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: false }),
});
