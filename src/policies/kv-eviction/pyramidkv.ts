// PyramidKV (Cai et al., 2024): SnapKV scores with per-layer budgets falling linearly with depth (bottom 2x(avg-window)-min, top (avg-window)/beta, plus the window), summing to the uniform total.
import { Type, type Static } from '@sinclair/typebox';
import { BudgetSchema, resolveBudget } from '../budget.js';
import { PolicyError } from '../errors.js';
import type { LayerKvView } from '../types.js';
import { CompressEverySchema, defineEviction } from './common.js';
import { checkKernel, SnapkvScoring, windowScores } from './snapkv.js';

export const PyramidkvParams = Type.Object(
  {
    budget: BudgetSchema(0.5, 'Average entries kept per layer, the observation window included; the layers together keep budget x layers.'),
    ...SnapkvScoring,
    beta: Type.Number({ minimum: 1, default: 20, description: "Steepness: the top layer keeps (average - window) / beta beyond its window (the paper's 20)." }),
    compressEvery: CompressEverySchema(0),
  },
  { additionalProperties: false },
);
export type PyramidkvParams = Static<typeof PyramidkvParams>;

/**
 * Per-layer entry budgets for `total` entries over `numLayers` layers, as the
 * reference code allocates them: beyond each layer's observation window the
 * budget falls linearly from max to min = (avg - window) / beta, with
 * max = 2 (avg - window) - min so the sum is unchanged; max is capped at
 * length - window (then min rises to keep the sum). When the average does not
 * exceed the window the split is uniform. Rounded down, and the remainder goes
 * to the lowest layers, so the result is non-increasing and sums to `total`
 * (unless total exceeds numLayers * length, where every layer keeps length).
 */
export function layerBudgets(
  total: number,
  numLayers: number,
  params: { readonly observationWindow: number; readonly beta: number },
  length: number = Number.POSITIVE_INFINITY,
): Int32Array {
  if (!Number.isInteger(numLayers) || numLayers < 1) throw new PolicyError(`layerBudgets: numLayers must be an integer >= 1, got ${numLayers}`);
  if (!Number.isInteger(total) || total < 0) throw new PolicyError(`layerBudgets: total must be an integer >= 0, got ${total}`);
  if (!(params.beta >= 1)) throw new PolicyError(`layerBudgets: beta must be >= 1, got ${params.beta}`);
  const w = params.observationWindow;
  const avg = total / numLayers;
  const real = new Float64Array(numLayers).fill(avg);
  const selectable = avg - w;
  if (numLayers > 1 && selectable > 0) {
    let minNum = selectable / params.beta;
    let maxNum = 2 * selectable - minNum;
    if (maxNum >= length - w) {
      maxNum = length - w;
      minNum = 2 * selectable - maxNum;
    }
    const steps = (maxNum - minNum) / (numLayers - 1);
    for (let l = 0; l < numLayers; l++) real[l] = w + maxNum - l * steps;
  }
  const cap = Number.isFinite(length) ? length : Number.MAX_SAFE_INTEGER;
  const out = new Int32Array(numLayers);
  let sum = 0;
  for (let l = 0; l < numLayers; l++) {
    out[l] = Math.min(cap, Math.max(0, Math.floor((real[l] ?? 0) + 1e-9)));
    sum += out[l] ?? 0;
  }
  for (let l = 0; l < numLayers && sum < total; l++) {
    if ((out[l] ?? 0) < cap) {
      out[l] = (out[l] ?? 0) + 1;
      sum++;
    }
  }
  // The rounding epsilon can overshoot by one; take it from the top layers, which keeps the order.
  for (let l = numLayers - 1; l >= 0 && sum > total; l--) {
    if ((out[l] ?? 0) > 0) {
      out[l] = (out[l] ?? 0) - 1;
      sum--;
    }
  }
  return out;
}

export function score(view: LayerKvView, params: PyramidkvParams): Float32Array {
  return windowScores('pyramidkv', view, params.kernelSize, params.pooling);
}

export const pyramidkv = defineEviction({
  method: 'pyramidkv',
  rule: 'SnapKV scoring with per-layer budgets decreasing linearly with depth (lower layers keep more; the top keeps (average - window) / beta beyond its window); the total equals budget x layers.',
  schema: PyramidkvParams,
  positions: 'original',
  needs: (params) => ({ accumulatedAttention: false, observationWindow: params.observationWindow, lastQueryAttention: false }),
  score,
  protect: (params, keep) => ({ sinkTokens: 0, recentTokens: Math.min(params.observationWindow, keep) }),
  layerKeep: (params, view, contextTokens) => {
    const uniform = resolveBudget(params.budget, contextTokens);
    const budgets = layerBudgets(uniform * view.numLayers, view.numLayers, params, contextTokens);
    return budgets[view.layer] ?? uniform;
  },
  check: checkKernel,
});
