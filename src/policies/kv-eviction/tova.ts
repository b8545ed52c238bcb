// TOVA (Oren et al., 2024): keep the entries the newest query attends to most, its attention averaged over all heads of the layer; the lowest is evicted each step.
import { Type, type Static } from '@sinclair/typebox';
import { BudgetSchema } from '../budget.js';
import type { LayerKvView } from '../types.js';
import { checkLength, CompressEverySchema, defineEviction, missingStat } from './common.js';

export const TovaParams = Type.Object(
  {
    budget: BudgetSchema(512, 'Entries kept (the paper fixes the number of states).'),
    compressEvery: CompressEverySchema(1),
  },
  { additionalProperties: false },
);
export type TovaParams = Static<typeof TovaParams>;

/** The last query's attention, averaged over every query head of the layer; the same ranking for every KV head, as in the paper. */
export function score(view: LayerKvView, _params: TovaParams): Float32Array {
  const att = view.lastQueryAttention;
  if (att === null) throw missingStat('tova', 'lastQueryAttention', 'lastQueryAttention');
  const { numKvHeads: h, groupSize: g, length: n } = view;
  checkLength('tova', 'lastQueryAttention', att.length, h * g * n, 'numKvHeads * groupSize * length');
  const mean = new Float64Array(n);
  for (let row = 0; row < h * g; row++) {
    const base = row * n;
    for (let j = 0; j < n; j++) mean[j] = (mean[j] ?? 0) + (att[base + j] ?? 0);
  }
  const out = new Float32Array(h * n);
  const scale = 1 / (h * g);
  for (let head = 0; head < h; head++) {
    for (let j = 0; j < n; j++) out[head * n + j] = (mean[j] ?? 0) * scale;
  }
  return out;
}

export const tova = defineEviction({
  method: 'tova',
  rule: "Keep the entries with the highest attention from the newest query, averaged over the layer's heads; the newest entry is always kept.",
  schema: TovaParams,
  positions: 'original',
  needs: () => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: true }),
  score,
  // kvpress keeps the newest entry unconditionally; its self-attention is almost always high anyway.
  protect: () => ({ sinkTokens: 0, recentTokens: 1 }),
});
