// StreamingLLM (Xiao et al., 2023): keep the first `sinkTokens` entries (attention sinks) and the newest ones up to `budget`; positions roll within the cache.
import { Type, type Static } from '@sinclair/typebox';
import { BudgetSchema } from '../budget.js';
import type { ParamIssue } from '../method-types.js';
import { NO_STATS, type LayerKvView } from '../types.js';
import { CompressEverySchema, defineEviction } from './common.js';

export const StreamingLlmParams = Type.Object(
  {
    budget: BudgetSchema(256, 'Entries kept: the sinks plus the recent window.'),
    sinkTokens: Type.Integer({ minimum: 0, default: 4, description: 'First positions always kept (the paper uses 4).' }),
    compressEvery: CompressEverySchema(1),
  },
  { additionalProperties: false },
);
export type StreamingLlmParams = Static<typeof StreamingLlmParams>;

/** Recency: the entry's position. The selector's sink protection does the rest. */
export function score(view: LayerKvView, _params: StreamingLlmParams): Float32Array {
  const out = new Float32Array(view.numKvHeads * view.length);
  for (let i = 0; i < out.length; i++) out[i] = view.positions[i] ?? 0;
  return out;
}

export const streamingLlm = defineEviction({
  method: 'streaming-llm',
  rule: 'Keep the first sinkTokens entries (attention sinks) and the most recent entries up to budget; kept entries are renumbered within the cache (rolling positions).',
  schema: StreamingLlmParams,
  positions: 'rolling',
  needs: () => NO_STATS,
  score,
  protect: (params, keep) => ({ sinkTokens: Math.min(params.sinkTokens, keep), recentTokens: 0 }),
  check: (params): ParamIssue[] =>
    params.budget > 1 && params.sinkTokens >= params.budget
      ? [{ path: '/sinkTokens', message: `must be less than budget (${params.budget}) to leave room for the recent window` }]
      : [],
});
