import type { PolicyReport } from '../policies/types.js';
import type { CapserveMetrics } from './metrics.js';

/** C and A metrics from what the policy reported for one finished sequence (and compression's P cost). */
export function observePolicyReport(metrics: CapserveMetrics, report: PolicyReport): void {
  const labels = { policy: report.policy };
  metrics.kvTokensRetained.observe(labels, report.kvTokensRetained);
  metrics.compressionRatio.observe(labels, report.compressionRatio);
  if (report.prefixCache !== undefined) {
    metrics.prefixCacheQueries.inc({ policy: report.policy, result: report.prefixCache.status });
    if (report.prefixCache.cachedTokens > 0) metrics.prefixCacheHitTokens.inc(labels, report.prefixCache.cachedTokens);
  }
  if (report.attentionMassRetained !== null) metrics.attentionMassRetained.observe(labels, report.attentionMassRetained);
  if (report.kind === 'context-compression') {
    const original = numberDetail(report, 'originalTokens');
    const compressed = numberDetail(report, 'compressedTokens');
    if (original !== null && compressed !== null)
      metrics.promptTokensDropped.inc({ policy: report.policy, reason: 'compression' }, Math.max(0, original - compressed));
    const ms = numberDetail(report, 'compressMs');
    if (ms !== null) metrics.compressionSeconds.observe(labels, ms / 1000);
  }
}

function numberDetail(report: PolicyReport, key: string): number | null {
  const v = report.details[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
