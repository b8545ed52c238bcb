/**
 * One entry point for the engine: apply the request's overflow mode. Throws
 * ContextLengthExceededError for mode `error` and whenever a mode cannot fit
 * the request; otherwise returns the (possibly unchanged) prompt and the report.
 */
import type { TextTokenizer } from '../../model/tokenizer-types.js';
import { PolicyError } from '../errors.js';
import type { TokenScorer } from '../compression/scorer.js';
import { compressToFit, type CompressionPolicyRef } from './compress.js';
import { overflowError } from './error-mode.js';
import { evictDecision } from './evict.js';
import { checkNumbers, fits, unchanged } from './fit.js';
import { shiftPrompt } from './shift.js';
import { truncatePrompt } from './truncate.js';
import type { OverflowInput, OverflowResult, OverflowSpec } from './types.js';

export interface OverflowDeps {
  /** Resolves a configured context-compression policy by name (mode compress). */
  readonly compressionPolicy?: (name: string) => CompressionPolicyRef | undefined;
  readonly scorer?: TokenScorer;
  readonly tokenizer?: TextTokenizer;
}

export async function handleOverflow(input: OverflowInput, spec: OverflowSpec, deps: OverflowDeps = {}): Promise<OverflowResult> {
  checkNumbers(input);
  switch (spec.mode) {
    case 'error':
      if (fits(input)) return unchanged(input, 'error');
      throw overflowError(input);
    case 'truncate':
      return truncatePrompt(input, spec.side);
    case 'shift':
      return shiftPrompt(input, spec.keep);
    case 'evict':
      return evictDecision(input, spec.policy);
    case 'compress': {
      if (fits(input)) return unchanged(input, 'compress', { policy: spec.policy });
      const policy = deps.compressionPolicy?.(spec.policy);
      if (policy === undefined) throw new PolicyError(`overflow compress: no context-compression policy named ${JSON.stringify(spec.policy)} is configured`);
      if (deps.scorer === undefined || deps.tokenizer === undefined) throw new PolicyError('overflow compress: no scorer model or tokenizer was provided');
      return compressToFit(input, policy, deps.scorer, deps.tokenizer);
    }
  }
}
