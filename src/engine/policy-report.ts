/** What a policy did for one request: the report in the response, the SSE final chunk and the metrics. */
import type { PolicyReport } from '../policies/types.js';
import type { Sequence } from './sequence.js';

export function policyReport(seq: Sequence, numLayers: number): PolicyReport {
  const policy = seq.request.servingPolicy;
  const covered = seq.prefilled + Math.max(0, seq.generated - 1);
  const kv = seq.kv;
  let retained = covered;
  if (kv) {
    let sum = 0;
    for (let l = 0; l < numLayers; l++) sum += kv.length(l);
    retained = sum / numLayers;
  }
  const c = seq.compression;
  if (c) {
    return {
      policy: seq.request.policy,
      kind: 'context-compression',
      promptTokens: c.originalTokens,
      kvTokensRetained: retained,
      contextTokens: covered,
      compressionRatio: c.originalTokens > 0 ? c.compressedTokens / c.originalTokens : 1,
      attentionMassRetained: null,
      details: { ...c.details, originalTokens: c.originalTokens, compressedTokens: c.compressedTokens, compressMs: seq.compressMs },
    };
  }
  return {
    policy: seq.request.policy,
    kind: policy?.kind ?? 'none',
    promptTokens: seq.promptLength,
    kvTokensRetained: retained,
    contextTokens: covered,
    compressionRatio: covered > 0 ? retained / covered : 1,
    attentionMassRetained: seq.eviction ? seq.eviction.attentionMassRetained : null,
    details: seq.eviction
      ? { evictions: seq.eviction.evictionCount }
      : seq.quest
        ? { attendedRatio: seq.quest.attendedRatio }
        : seq.sinkWindow
          ? { sinkTokens: seq.sinkWindow.sinkTokens, windowTokens: seq.sinkWindow.windowTokens }
          : {},
  };
}
