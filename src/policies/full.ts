// full: no policy; every query attends to the whole cache and nothing is evicted (the reference the other methods are measured against).
import { Type } from '@sinclair/typebox';
import { PLAIN_REQUEST, type NoneMethod } from './method-types.js';
import { PlainRuntime } from './runtime.js';

export const FullParams = Type.Object({}, { additionalProperties: false });

export const full: NoneMethod = Object.freeze({
  method: 'none',
  kind: 'none' as const,
  rule: 'Keep every entry and attend to all of them: exact, and memory and latency grow with the context.',
  // Exact attention over the whole context; pays in memory and per-token latency as the context grows.
  cap: Object.freeze({ favors: Object.freeze(['A', 'C'] as const), costs: 'P' as const }),
  schema: FullParams,
  needs: () => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: false }),
  check: () => [],
  instantiate: () => new PlainRuntime('none'),
  request: () => PLAIN_REQUEST,
});
