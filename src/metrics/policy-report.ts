import type { PolicyReport } from '../policies/types.js';
import type { CapserveMetrics } from './metrics.js';

/** C and A metrics from what the policy reported for one finished sequence. */
export function observePolicyReport(metrics: CapserveMetrics, report: PolicyReport): void {
  const labels = { policy: report.policy };
  metrics.kvTokensRetained.observe(labels, report.kvTokensRetained);
  metrics.compressionRatio.observe(labels, report.compressionRatio);
  if (report.attentionMassRetained !== null) metrics.attentionMassRetained.observe(labels, report.attentionMassRetained);
}
