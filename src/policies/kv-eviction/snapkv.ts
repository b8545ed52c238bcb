// SnapKV (Li et al., 2024): score each prefix entry by the attention of the last observationWindow prompt queries (summed over the window and the group's heads, pooled with kernelSize); the window is always kept.
import { Type, type Static } from '@sinclair/typebox';
import { BudgetSchema } from '../budget.js';
import { PolicyError } from '../errors.js';
import type { ParamIssue } from '../method-types.js';
import type { LayerKvView } from '../types.js';
import { checkLength, CompressEverySchema, defineEviction, missingStat } from './common.js';
import { addPooled, type Pooling } from './pooling.js';

/** Shared with PyramidKV, which scores the same way. */
export const SnapkvScoring = {
  observationWindow: Type.Integer({
    minimum: 1,
    default: 32,
    description: 'Last prompt queries whose attention votes (the paper uses 32); these entries are always kept.',
  }),
  kernelSize: Type.Integer({
    minimum: 1,
    maximum: 255,
    default: 7,
    description: 'Odd pooling kernel over positions, so neighbours of a chosen entry survive with it (the paper uses 7).',
  }),
  pooling: Type.Union([Type.Literal('max'), Type.Literal('avg')], {
    default: 'max',
    description: "'max' (the paper's experiments) or 'avg' (the reference code's default).",
  }),
};

export const SnapkvParams = Type.Object(
  {
    budget: BudgetSchema(0.5, 'Entries kept, the observation window included.'),
    ...SnapkvScoring,
    compressEvery: CompressEverySchema(0),
  },
  { additionalProperties: false },
);
export type SnapkvParams = Static<typeof SnapkvParams>;

export function checkKernel(params: { readonly kernelSize: number }): ParamIssue[] {
  return params.kernelSize % 2 === 1
    ? []
    : [{ path: '/kernelSize', message: `must be odd (pooling keeps the length only with an odd kernel), got ${params.kernelSize}` }];
}

/**
 * windowAttention [numKvHeads, groupSize, window, length]: sum over the window's
 * queries per query head, pool over the prefix (the window itself excluded, as
 * in the reference code), then sum over the group. The window scores +Infinity.
 */
export function windowScores(method: string, view: LayerKvView, kernelSize: number, pooling: Pooling): Float32Array {
  const att = view.windowAttention;
  if (att === null) throw missingStat(method, 'windowAttention', 'observationWindow');
  const { numKvHeads: h, groupSize: g, length: n, window: w } = view;
  if (w < 1 || w > n) throw new PolicyError(`${method}: the view's window (${w}) must be between 1 and the cache length (${n})`);
  checkLength(method, 'windowAttention', att.length, h * g * w * n, 'numKvHeads * groupSize * window * length');
  const prefix = n - w;
  const out = new Float32Array(h * n);
  const row = new Float64Array(prefix);
  for (let head = 0; head < h; head++) {
    for (let q = 0; q < g; q++) {
      row.fill(0);
      for (let i = 0; i < w; i++) {
        const base = ((head * g + q) * w + i) * n;
        for (let j = 0; j < prefix; j++) row[j] = (row[j] ?? 0) + (att[base + j] ?? 0);
      }
      addPooled(row, prefix, kernelSize, pooling, out, head * n);
    }
    out.fill(Number.POSITIVE_INFINITY, head * n + prefix, head * n + n);
  }
  return out;
}

export function score(view: LayerKvView, params: SnapkvParams): Float32Array {
  return windowScores('snapkv', view, params.kernelSize, params.pooling);
}

export const snapkv = defineEviction({
  method: 'snapkv',
  rule: 'At the end of prefill, keep the observation window (last observationWindow queries) and the prefix entries it attends to most (attention summed over window and group, pooled with kernelSize).',
  schema: SnapkvParams,
  positions: 'original',
  needs: (params) => ({ accumulatedAttention: false, observationWindow: params.observationWindow, lastQueryAttention: false }),
  score,
  protect: (params, keep) => ({ sinkTokens: 0, recentTokens: Math.min(params.observationWindow, keep) }),
  check: checkKernel,
});
