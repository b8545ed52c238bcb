/**
 * Mode `shift`, llama.cpp's context shift applied to the prompt: keep the
 * first n_keep tokens and discard the oldest tokens after them in blocks of
 * half the remaining room (n_discard = (budget - n_keep) / 2), as many blocks
 * as needed. Unlike `truncate` it usually frees more than the excess, which
 * leaves headroom the way llama.cpp does.
 */
import { ContextLengthExceededError } from './errors.js';
import { budgetOrThrow, checkNumbers, dropRange, fits, promptLength, protectedHead, report, unchanged } from './fit.js';
import type { OverflowInput, OverflowResult } from './types.js';

/** `keep`: n_keep tokens, or 'system' for the protected head (BOS + system message + its end marker). */
export function shiftPrompt(input: OverflowInput, keep: number | 'system'): OverflowResult {
  checkNumbers(input);
  if (keep !== 'system' && (!Number.isInteger(keep) || keep < 0))
    throw new RangeError(`overflow shift: keep must be an integer >= 0 or 'system', got ${String(keep)}`);
  const total = promptLength(input.segments);
  const nKeep = Math.min(total, keep === 'system' ? protectedHead(input.segments) : keep);
  if (fits(input)) return unchanged(input, 'shift', { keep: nKeep, block: 0, blocks: 0 });
  const budget = budgetOrThrow(input, 'shift');
  if (nKeep >= budget) {
    throw new ContextLengthExceededError(
      total,
      input.maxTokens,
      input.contextWindow,
      `Overflow mode shift keeps the first ${nKeep} tokens, more than the ${budget} available to the prompt.`,
    );
  }
  const block = Math.max(1, Math.floor((budget - nKeep) / 2));
  const blocks = Math.ceil((total - budget) / block);
  const discard = Math.min(total - nKeep, blocks * block);
  const cut = dropRange(input.segments, nKeep, discard);
  return { ...cut, report: report(input, 'shift', true, cut.tokens.length, { keep: nKeep, block, blocks }), compression: null, evictPolicy: null };
}
