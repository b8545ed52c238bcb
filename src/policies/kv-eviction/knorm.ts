// KNorm (Devoto et al., 2024, "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression"): keep the keys with the lowest L2 norm; score = -||k||.
import { Type, type Static } from '@sinclair/typebox';
import { BudgetSchema } from '../budget.js';
import { NO_STATS, type LayerKvView } from '../types.js';
import { checkLength, CompressEverySchema, defineEviction } from './common.js';

export const KnormParams = Type.Object(
  {
    budget: BudgetSchema(0.5, 'Entries kept.'),
    compressEvery: CompressEverySchema(0),
  },
  { additionalProperties: false },
);
export type KnormParams = Static<typeof KnormParams>;

export function score(view: LayerKvView, _params: KnormParams): Float32Array {
  const { numKvHeads: h, headDim: d, length: n, keys } = view;
  checkLength('knorm', 'keys', keys.length, n * h * d, 'length * numKvHeads * headDim');
  const out = new Float32Array(h * n);
  for (let j = 0; j < n; j++) {
    for (let head = 0; head < h; head++) {
      const base = (j * h + head) * d;
      let sum = 0;
      for (let c = 0; c < d; c++) {
        const v = keys[base + c] ?? 0;
        sum += v * v;
      }
      out[head * n + j] = -Math.sqrt(sum);
    }
  }
  return out;
}

export const knorm = defineEviction({
  method: 'knorm',
  rule: 'Keep the entries whose keys have the lowest L2 norm (score = -||k||); needs no attention statistics.',
  schema: KnormParams,
  positions: 'original',
  needs: () => NO_STATS,
  score,
  protect: () => ({ sinkTokens: 0, recentTokens: 0 }),
});
