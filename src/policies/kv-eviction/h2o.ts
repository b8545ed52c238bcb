// H2O (Zhang et al., 2023): keep the heavy hitters (most accumulated attention received) plus a recent window of recentFraction * budget.
import { Type, type Static } from '@sinclair/typebox';
import { BudgetSchema } from '../budget.js';
import type { LayerKvView } from '../types.js';
import { checkLength, CompressEverySchema, defineEviction, missingStat } from './common.js';

export const H2oParams = Type.Object(
  {
    budget: BudgetSchema(0.2, 'Entries kept: heavy hitters plus the recent window (the paper keeps 20%).'),
    recentFraction: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.5,
      description: 'Share of the budget reserved for the most recent entries (the paper splits it evenly).',
    }),
    compressEvery: CompressEverySchema(1),
  },
  { additionalProperties: false },
);
export type H2oParams = Static<typeof H2oParams>;

/** Attention each entry has received, summed over every query so far and the group's query heads. */
export function score(view: LayerKvView, _params: H2oParams): Float32Array {
  const acc = view.accumulatedAttention;
  if (acc === null) throw missingStat('h2o', 'accumulatedAttention', 'accumulatedAttention');
  checkLength('h2o', 'accumulatedAttention', acc.length, view.numKvHeads * view.length, 'numKvHeads * length');
  return Float32Array.from(acc);
}

export const h2o = defineEviction({
  method: 'h2o',
  rule: 'Keep the entries with the most accumulated attention received (heavy hitters) plus the most recent recentFraction of the budget.',
  schema: H2oParams,
  positions: 'original',
  needs: () => ({ accumulatedAttention: true, observationWindow: 0, lastQueryAttention: false }),
  score,
  protect: (params, keep) => ({ sinkTokens: 0, recentTokens: Math.floor(params.recentFraction * keep + 1e-9) }),
});
