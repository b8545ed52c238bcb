// Quest (Tang et al., 2024): per page of pageSize keys keep per-channel min/max; each decode step, per KV head, attend only to the topPages pages (or a token budget) with the highest bound sum_c max(q_c*min_c, q_c*max_c), plus the current page; the first denseLayers layers stay dense; the cache stays whole.
import { Type, type Static } from '@sinclair/typebox';
import { BudgetSchema, resolveBudget } from '../budget.js';
import { PolicyError } from '../errors.js';
import { KV_BLOCK } from '../../kv/sequence-kv.js';
import { markTopK } from '../kv-eviction/select.js';
import { typedParams, type ParamIssue } from '../method-types.js';
import type { Policy } from '../policy.js';
import type { KeepPlan, LayerKvView } from '../types.js';
import { defineSparse } from './common.js';

export const QuestParams = Type.Object(
  {
    pageSize: Type.Integer({ minimum: 1, maximum: 4096, default: 16, description: 'Tokens per page (the paper uses 16).' }),
    budget: Type.Optional(BudgetSchema(null, 'Tokens attended per step, resolved against the current cache length and rounded up to whole pages. Set this or topPages.')),
    topPages: Type.Optional(Type.Integer({ minimum: 1, description: 'Pages attended per step besides the current one. Set this or budget.' })),
    denseLayers: Type.Integer({ minimum: 0, default: 2, description: 'First layers that attend to the whole cache (the paper keeps two dense).' }),
  },
  { additionalProperties: false },
);
export type QuestParams = Static<typeof QuestParams>;

/** A quest policy's params, typed. */
export function questParams(policy: Policy): QuestParams {
  if (policy.method !== 'quest') throw new PolicyError(`policy ${JSON.stringify(policy.name)} (method ${JSON.stringify(policy.method)}) is not a quest policy`);
  return typedParams(QuestParams, policy.params);
}

function checkQuest(params: QuestParams): ParamIssue[] {
  const issues: ParamIssue[] = [];
  if ((params.budget === undefined) === (params.topPages === undefined)) {
    issues.push({ path: params.budget === undefined ? '' : '/topPages', message: 'set exactly one of budget or topPages' });
  }
  // The graph splits each layer's cache (a whole number of KV blocks) into pages with one Reshape.
  if (KV_BLOCK % params.pageSize !== 0) {
    const divisors = Array.from({ length: KV_BLOCK }, (_, i) => i + 1).filter((d) => KV_BLOCK % d === 0);
    issues.push({
      path: '/pageSize',
      message: `must divide the KV block size (${KV_BLOCK} entries), so every cache splits into whole pages; got ${params.pageSize}, use one of ${divisors.join(', ')}`,
    });
  }
  return issues;
}

/**
 * Per-channel key bounds per page. Layout [page, kvHead, channel] so appending
 * pages only grows the arrays. Owned by one sequence's layer; extendPageBounds
 * updates it in place as the (append-only) cache grows.
 */
export interface PageBounds {
  readonly pageSize: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Entries covered. */
  length: number;
  min: Float32Array;
  max: Float32Array;
}

export function buildPageBounds(keys: Float32Array, length: number, numKvHeads: number, headDim: number, pageSize: number): PageBounds {
  const bounds: PageBounds = { pageSize, numKvHeads, headDim, length: 0, min: new Float32Array(0), max: new Float32Array(0) };
  extendPageBounds(bounds, keys, length);
  return bounds;
}

/** Brings `bounds` up to `length` entries of `keys` [length, numKvHeads, headDim], recomputing only the last partial page and new ones. */
export function extendPageBounds(bounds: PageBounds, keys: Float32Array, length: number): void {
  const { pageSize, numKvHeads: h, headDim: d } = bounds;
  if (length < bounds.length) throw new PolicyError(`quest: page bounds cover ${bounds.length} entries but the cache has ${length}; rebuild them after eviction`);
  if (keys.length < length * h * d) throw new PolicyError(`quest: keys hold ${keys.length} values, fewer than length * numKvHeads * headDim = ${length * h * d}`);
  const pages = Math.ceil(length / pageSize);
  const stride = h * d;
  if (bounds.min.length < pages * stride) {
    const capacity = Math.max(pages, Math.ceil((bounds.min.length / stride) * 2)) * stride;
    const min = new Float32Array(capacity);
    const max = new Float32Array(capacity);
    min.set(bounds.min);
    max.set(bounds.max);
    bounds.min = min;
    bounds.max = max;
  }
  const firstPage = Math.floor(bounds.length / pageSize);
  for (let p = firstPage; p < pages; p++) {
    bounds.min.fill(Number.POSITIVE_INFINITY, p * stride, (p + 1) * stride);
    bounds.max.fill(Number.NEGATIVE_INFINITY, p * stride, (p + 1) * stride);
    const end = Math.min(length, (p + 1) * pageSize);
    for (let j = p * pageSize; j < end; j++) {
      for (let i = 0; i < stride; i++) {
        const v = keys[j * stride + i] ?? 0;
        const o = p * stride + i;
        if (v < (bounds.min[o] ?? 0)) bounds.min[o] = v;
        if (v > (bounds.max[o] ?? 0)) bounds.max[o] = v;
      }
    }
  }
  bounds.length = length;
}

/** Upper bound of q . k over every key of `page` for one query head (query[qOffset .. qOffset + headDim)) of KV head `kvHead`. */
export function pageUpperBound(query: Float32Array, qOffset: number, bounds: PageBounds, page: number, kvHead: number): number {
  const d = bounds.headDim;
  const base = (page * bounds.numKvHeads + kvHead) * d;
  let sum = 0;
  for (let c = 0; c < d; c++) {
    const q = query[qOffset + c] ?? 0;
    sum += q >= 0 ? q * (bounds.max[base + c] ?? 0) : q * (bounds.min[base + c] ?? 0);
  }
  return sum;
}

export type QuestView = Pick<LayerKvView, 'layer' | 'numKvHeads' | 'groupSize' | 'headDim' | 'length'>;

/**
 * Entries each KV head attends to this step, ascending, the same count for every
 * head; null: attend to the whole cache (dense layer, or the budget covers it).
 * A page's rank for a KV head is the largest bound over the group's query heads:
 * it matters if any of them may attend to it. query: [numHeads * headDim], post-RoPE.
 */
export function questSelect(view: QuestView, query: Float32Array, bounds: PageBounds, params: QuestParams): KeepPlan | null {
  if (view.layer < params.denseLayers) return null;
  const { numKvHeads: h, groupSize: g, headDim: d, length: n } = view;
  if (query.length !== h * g * d) throw new PolicyError(`quest: query has ${query.length} values, expected numHeads * headDim = ${h * g} * ${d}`);
  if (bounds.length !== n || bounds.numKvHeads !== h || bounds.headDim !== d || bounds.pageSize !== params.pageSize) {
    throw new PolicyError(`quest: page bounds (length ${bounds.length}, ${bounds.numKvHeads} heads, dim ${bounds.headDim}, page ${bounds.pageSize}) do not match the layer (length ${n}, ${h} heads, dim ${d}, page ${params.pageSize})`);
  }
  const pageSize = params.pageSize;
  const pages = Math.ceil(n / pageSize);
  const others = pages - 1;
  const chosen = params.topPages ?? Math.max(0, Math.ceil(resolveBudget(params.budget ?? 1, n) / pageSize) - 1);
  if (chosen >= others) return null;
  const scores = new Float32Array(others);
  const mask = new Uint8Array(pages);
  const scratch = new Float32Array(others);
  const kept = chosen * pageSize + (n - others * pageSize);
  const plan: Int32Array[] = [];
  for (let kv = 0; kv < h; kv++) {
    for (let p = 0; p < others; p++) {
      let best = Number.NEGATIVE_INFINITY;
      for (let q = 0; q < g; q++) {
        const ub = pageUpperBound(query, (kv * g + q) * d, bounds, p, kv);
        if (ub > best) best = ub;
      }
      scores[p] = best;
    }
    mask.fill(0);
    mask[others] = 1;
    markTopK(scores, 0, others, chosen, mask, 0, scratch);
    const out = new Int32Array(kept);
    let w = 0;
    for (let p = 0; p < pages; p++) {
      if (mask[p] !== 1) continue;
      const end = Math.min(n, (p + 1) * pageSize);
      for (let j = p * pageSize; j < end; j++) out[w++] = j;
    }
    plan.push(out);
  }
  return plan;
}

export const quest = defineSparse({
  method: 'quest',
  rule: 'Each decode step, per KV head, attend to the current page and the topPages pages (or budget tokens) whose per-channel key min/max bound q.k highest; the first denseLayers layers stay dense; nothing is evicted.',
  cap: Object.freeze({ favors: Object.freeze(['A', 'P'] as const), costs: 'C' as const }),
  schema: QuestParams,
  needs: () => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: true }),
  check: checkQuest,
});
