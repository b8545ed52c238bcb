/** Mode `error`: refuse, stating the window and both numbers (vLLM's behaviour, with OpenAI's wording). */
import { ContextLengthExceededError } from './errors.js';
import { checkNumbers, promptLength } from './fit.js';
import type { OverflowInput } from './types.js';

/** The error to raise for this request (whether or not it overflows: callers check `fits` first). */
export function overflowError(input: OverflowInput): ContextLengthExceededError {
  checkNumbers(input);
  return new ContextLengthExceededError(promptLength(input.segments), input.maxTokens, input.contextWindow);
}
