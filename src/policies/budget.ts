import { Type, type TUnion, type TNumber, type TInteger } from '@sinclair/typebox';
import { PolicyError } from './errors.js';

/**
 * A budget is either a ratio (0 < r <= 1) or a token count (an integer >= 1).
 * 1 reads as the ratio 1 ("keep everything"): a one-token budget is never useful.
 */
export type Budget = number;

export const BUDGET_EXPECTS = 'a ratio in (0, 1] or a token count (an integer >= 1)';

/** The budget schema (null: no default); `x-expects` gives validation errors one readable line instead of one per union branch. */
export function BudgetSchema(defaultValue: Budget | null, description: string): TUnion<[TNumber, TInteger]> {
  return Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1 }), Type.Integer({ minimum: 1 })], {
    ...(defaultValue === null ? {} : { default: defaultValue }),
    description: `${description} ${BUDGET_EXPECTS}; 1 means keep everything.`,
    'x-expects': BUDGET_EXPECTS,
  });
}

/**
 * Entries to keep out of `length`. A ratio resolves against `length` (rounded
 * down, at least 1); a token count is capped at `length`.
 *
 * What `length` is, is the caller's choice and part of each use's contract:
 * eviction passes the tokens the request has covered so far (prompt plus
 * generated), so a ratio keeps that share of the context at every compression
 * and a token count keeps the cache flat; Quest passes the current cache length.
 */
export function resolveBudget(budget: Budget, length: number): number {
  if (!Number.isInteger(length) || length < 0) throw new PolicyError(`resolveBudget: length must be an integer >= 0, got ${length}`);
  if (!(budget > 0) || (budget > 1 && !Number.isInteger(budget))) {
    throw new PolicyError(`resolveBudget: budget must be ${BUDGET_EXPECTS}, got ${budget}`);
  }
  if (length === 0) return 0;
  if (budget <= 1) {
    // The epsilon absorbs float error (0.29 * 100 = 28.999999999999996).
    return Math.min(length, Math.max(1, Math.floor(budget * length + 1e-9)));
  }
  return Math.min(length, budget);
}
