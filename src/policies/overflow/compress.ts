/**
 * Mode `compress`: a named context-compression policy brought to fit. The
 * target is the prompt budget (window - max_tokens) as a token count, which
 * each method resolves against what it may drop; the effective rate over the
 * compressible tokens is reported.
 */
import type { TextTokenizer } from '../../model/tokenizer-types.js';
import type { PolicyParams } from '../method-types.js';
import type { TokenScorer } from '../compression/scorer.js';
import type { CompressionMethod } from '../compression/types.js';
import { ContextLengthExceededError } from './errors.js';
import { budgetOrThrow, checkNumbers, fits, promptLength, report, unchanged } from './fit.js';
import type { OverflowInput, OverflowResult } from './types.js';

/** A configured compression policy: its name, method and validated params. */
export interface CompressionPolicyRef {
  readonly name: string;
  readonly method: CompressionMethod;
  readonly params: PolicyParams;
}

export async function compressToFit(
  input: OverflowInput,
  policy: CompressionPolicyRef,
  scorer: TokenScorer,
  tokenizer: TextTokenizer,
): Promise<OverflowResult> {
  checkNumbers(input);
  const detailBase = { policy: policy.name, method: policy.method.method };
  if (fits(input)) return unchanged(input, 'compress', detailBase);
  const budget = budgetOrThrow(input, 'compress');
  const total = promptLength(input.segments);
  // A count of 1 would read as the ratio 1 ("keep everything"); a one-token prompt budget is no use anyway.
  if (budget < 2) {
    throw new ContextLengthExceededError(total, input.maxTokens, input.contextWindow, 'Overflow mode compress needs room for at least 2 prompt tokens.');
  }
  const started = performance.now();
  const result = await policy.method.compress({ segments: input.segments }, scorer, tokenizer, { ...policy.params, rate: budget });
  const ms = performance.now() - started;
  if (result.compressedTokens > budget) {
    const protectedTokens = result.originalTokens - result.compressibleTokens;
    throw new ContextLengthExceededError(
      total,
      input.maxTokens,
      input.contextWindow,
      `Overflow mode compress (policy ${policy.name}) reached ${result.compressedTokens} tokens; the parts it must keep take ${protectedTokens} of the ${budget} available to the prompt.`,
    );
  }
  const kept = result.compressedTokens - (result.originalTokens - result.compressibleTokens);
  const detail = {
    ...detailBase,
    ratio: round(result.compressedTokens / Math.max(1, result.originalTokens)),
    rate: round(kept / Math.max(1, result.compressibleTokens)),
    ms: round(ms),
  };
  return {
    segments: result.segments,
    tokens: result.tokens,
    report: report(input, 'compress', true, result.compressedTokens, detail),
    compression: result,
    evictPolicy: null,
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
