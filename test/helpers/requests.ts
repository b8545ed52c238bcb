/** Engine requests as the engine tests and benches build them. */
import { DEFAULT_SAMPLING, type GenerateRequest } from '../../src/engine/types.js';
import type { Policy } from '../../src/policies/registry.js';

/**
 * A greedy request for exactly `maxTokens` tokens (EOS ignored) under `policy` (full attention
 * when absent); `extra` adds fields such as captureLogprobs or forcedTokens.
 */
export function greedyRequest(
  id: string,
  prompt: readonly number[],
  maxTokens: number,
  policy?: Policy,
  extra: Partial<GenerateRequest> = {},
): GenerateRequest {
  return {
    id,
    promptTokens: prompt,
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens, ignoreEos: true },
    policy: policy?.name ?? 'full',
    ...(policy ? { servingPolicy: policy } : {}),
    ...extra,
  };
}
