/** What a policy did for one request: the report in the response, the SSE final chunk and the metrics. */
import type { PolicyReport } from '../policies/types.js';
import type { Sequence } from './sequence.js';

/** The engine measures what the cache holds; the policy runtime says what it did. */
export function policyReport(seq: Sequence, numLayers: number): PolicyReport {
  const covered = seq.prefilled + Math.max(0, seq.generated - 1);
  const kv = seq.kv;
  let retained = covered;
  if (kv) {
    let sum = 0;
    for (let l = 0; l < numLayers; l++) sum += kv.length(l);
    retained = sum / numLayers;
  }
  const own = seq.runtime.report();
  return {
    policy: seq.request.policy,
    kind: seq.request.servingPolicy?.kind ?? 'none',
    promptTokens: own.promptTokens ?? seq.promptLength,
    kvTokensRetained: retained,
    contextTokens: covered,
    compressionRatio: own.compressionRatio ?? (covered > 0 ? retained / covered : 1),
    attentionMassRetained: own.attentionMassRetained,
    details: own.details,
    ...(seq.prefixCache !== null ? { prefixCache: seq.prefixCache } : {}),
  };
}
