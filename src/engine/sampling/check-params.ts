import type { SamplingParams } from '../types.js';

/**
 * Temperatures below this sample greedily, as in vLLM (_SAMPLING_EPS): dividing
 * by a near-zero temperature overflows to Infinity and NaN long before the
 * distribution would differ from argmax.
 */
export const GREEDY_TEMPERATURE = 1e-5;

/**
 * The API layer validates requests and answers 400s; this guards the engine
 * against a caller that skipped it, naming the offending field.
 */
export function checkSamplingParams(p: SamplingParams): void {
  const fail = (field: string, rule: string, value: unknown): never => {
    throw new RangeError(`sampling.${field} must be ${rule}, got ${String(value)}`);
  };
  if (!Number.isFinite(p.temperature) || p.temperature < 0) fail('temperature', 'a finite number >= 0', p.temperature);
  if (!Number.isFinite(p.topP) || p.topP <= 0 || p.topP > 1) fail('topP', 'in (0, 1]', p.topP);
  if (!Number.isInteger(p.topK)) fail('topK', 'an integer (0 or less disables)', p.topK);
  if (!Number.isFinite(p.minP) || p.minP < 0 || p.minP > 1) fail('minP', 'in [0, 1]', p.minP);
  if (!Number.isFinite(p.presencePenalty)) fail('presencePenalty', 'a finite number', p.presencePenalty);
  if (!Number.isFinite(p.frequencyPenalty)) fail('frequencyPenalty', 'a finite number', p.frequencyPenalty);
  if (!Number.isFinite(p.repetitionPenalty) || p.repetitionPenalty <= 0) {
    fail('repetitionPenalty', 'a finite number > 0', p.repetitionPenalty);
  }
  if (p.seed !== null && !Number.isSafeInteger(p.seed)) fail('seed', 'null or a safe integer', p.seed);
  if (p.logprobs !== null && (!Number.isInteger(p.logprobs) || p.logprobs < 0)) {
    fail('logprobs', 'null or an integer >= 0', p.logprobs);
  }
}
