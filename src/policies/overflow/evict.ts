/**
 * Mode `evict`: the prompt is not touched; the request is served with a
 * KV-eviction policy that keeps the cache within the window. This is only the
 * decision record: the engine must prefill in chunks and evict between them,
 * and positions past the model's trained range are the eviction method's
 * business (StreamingLLM's rolling positions handle them).
 */
import { checkNumbers, fits, promptLength, report, unchanged } from './fit.js';
import type { OverflowInput, OverflowResult } from './types.js';

export function evictDecision(input: OverflowInput, policy: string): OverflowResult {
  checkNumbers(input);
  if (policy === '') throw new RangeError('overflow evict: the KV-eviction policy name is empty');
  const detail = { policy, kvTokenLimit: input.contextWindow };
  if (fits(input)) return unchanged(input, 'evict', detail);
  const base = unchanged(input, 'evict', detail);
  return { ...base, report: report(input, 'evict', true, promptLength(input.segments), detail), evictPolicy: policy };
}
