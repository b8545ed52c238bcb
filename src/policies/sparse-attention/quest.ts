// Quest (Tang et al., 2024), run by quest-runtime.ts and the decoder graph's quest variant: per page of pageSize keys keep per-channel min/max; each decode step, per KV head, attend only to the topPages pages (or a token budget) with the highest bound sum_c max(q_c*min_c, q_c*max_c), plus the current page; the first denseLayers layers stay dense; the cache stays whole.
import { Type, type Static } from '@sinclair/typebox';
import { BudgetSchema } from '../budget.js';
import { PolicyError } from '../errors.js';
import { KV_BLOCK } from '../../kv/sequence-kv.js';
import { typedParams, type ParamIssue } from '../method-types.js';
import type { Policy } from '../policy.js';
import { defineSparse } from './common.js';
import { QuestRuntime } from './quest-runtime.js';

export const QuestParams = Type.Object(
  {
    pageSize: Type.Integer({ minimum: 1, maximum: 4096, default: 16, description: 'Tokens per page (the paper uses 16).' }),
    budget: Type.Optional(
      BudgetSchema(null, 'Tokens attended per step, resolved against the current cache length and rounded up to whole pages. Set this or topPages.'),
    ),
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

export const quest = defineSparse({
  method: 'quest',
  rule: 'Each decode step, per KV head, attend to the current page and the topPages pages (or budget tokens) whose per-channel key min/max bound q.k highest; the first denseLayers layers stay dense; nothing is evicted.',
  cap: Object.freeze({ favors: Object.freeze(['A', 'P'] as const), costs: 'C' as const }),
  schema: QuestParams,
  needs: () => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: true }),
  check: checkQuest,
  instantiate: (params, spec) => new QuestRuntime(params, spec),
});
