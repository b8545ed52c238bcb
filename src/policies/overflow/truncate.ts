/**
 * Mode `truncate`: drop exactly the excess, never the system message.
 * `left` drops the oldest tokens after it (the conversation's start; the last
 * user message survives); `middle` keeps both ends of what follows it and
 * drops the middle, where long documents lose least.
 */
import { ContextLengthExceededError } from './errors.js';
import { budgetOrThrow, checkNumbers, dropRange, fits, promptLength, protectedHead, report, unchanged } from './fit.js';
import type { OverflowInput, OverflowResult } from './types.js';

export function truncatePrompt(input: OverflowInput, side: 'left' | 'middle'): OverflowResult {
  checkNumbers(input);
  const detail = { side };
  if (fits(input)) return unchanged(input, 'truncate', detail);
  const budget = budgetOrThrow(input, 'truncate');
  const total = promptLength(input.segments);
  const head = protectedHead(input.segments);
  if (head >= budget) {
    throw new ContextLengthExceededError(
      total,
      input.maxTokens,
      input.contextWindow,
      `Overflow mode truncate keeps the system message, which with the template takes ${head} tokens of the ${budget} available to the prompt.`,
    );
  }
  const excess = total - budget;
  const rest = total - head;
  const keepRest = rest - excess;
  // left: drop the first `excess` tokens after the head; middle: keep floor(keepRest/2) at the front of the rest.
  const from = side === 'left' ? head : head + Math.floor(keepRest / 2);
  const cut = dropRange(input.segments, from, excess);
  return { ...cut, report: report(input, 'truncate', true, cut.tokens.length, detail), compression: null, evictPolicy: null };
}
