/** The STI section of the CAP report: accuracy at equal weight memory (table + chart) and cold-start TTFT. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StiBenchResult } from './sti-bench.js';
import { lineChart, type Series } from './svg-chart.js';

const f = (n: number, d: number): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const e = (n: number): string => (Number.isFinite(n) ? n.toExponential(2) : 'n/a');

/** Writes sti-accuracy-vs-memory.svg into `out`; returns the report lines and the chart names. */
export function stiSection(r: StiBenchResult | { error: string }, out: string): { lines: string[]; charts: string[] } {
  const lines = ['## Elastic weights (STI)', ''];
  if ('error' in r) return { lines: [...lines, `STI bench failed: ${r.error}`, ''], charts: [] };
  const charts: string[] = [];
  lines.push(
    `Accuracy at equal weight memory: every shard's KL cost at 8/4/2 bits profiled on ${r.profileTokens} tokens of tinystories_sample_cs336.txt; ` +
      `KL (nats/token, vs fp32) and perplexity measured on ${r.evalTokens} held-out tokens of tinystories_niklas6.txt. ` +
      `"uniform" is the widest single width whose shards fit the budget; "mixed" is the planner's importance-tuned knapsack over {2, 4, 8, 32} under the same budget. ` +
      `Bytes are shard file bytes (codes + fp32 block scales); embeddings and norms are outside (always resident).`,
    '',
    '| model | budget | budget bytes | uniform | uniform KL | uniform ppl | mixed bytes | mixed KL | mixed ppl | mixed widths 32/8/4/2 | fp32 ppl |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const a of r.accuracy) {
    const u = a.uniform;
    const h = a.mixed.histogram;
    const fits = a.mixed.bytes <= a.budgetBytes;
    lines.push(
      `| ${a.model} | ${a.label} | ${a.budgetBytes} | ${u === null ? 'none fits' : `int${u.bits}`} | ${u === null ? '-' : e(u.kl)} | ${u === null ? '-' : f(u.ppl, 3)} | ` +
        `${a.mixed.bytes}${fits ? '' : ' (none fits: all 2-bit)'} | ${e(a.mixed.kl)} | ${f(a.mixed.ppl, 3)} | ${h['32']}/${h['8']}/${h['4']}/${h['2']} | ${f(a.pplFp32, 3)} |`,
    );
  }
  if (r.accuracySkipped.length > 0) lines.push('', `Skipped: ${r.accuracySkipped.join('; ')}.`);
  const series: Series[] = [];
  for (const model of [...new Set(r.accuracy.map((a) => a.model))]) {
    const rows = r.accuracy.filter((a) => a.model === model && a.label.includes('/'));
    series.push({
      name: `${model} mixed (STI)`,
      points: rows.filter((a) => a.mixed.bytes <= a.budgetBytes).map((a) => [a.budgetBytes / a.fp32Bytes, Math.max(a.mixed.kl, 1e-7)] as const),
    });
    series.push({
      name: `${model} uniform`,
      points: rows.filter((a) => a.uniform !== null).map((a) => [a.budgetBytes / a.fp32Bytes, Math.max(a.uniform?.kl ?? 0, 1e-7)] as const),
    });
  }
  if (series.some((s) => s.points.length > 0)) {
    writeFileSync(
      join(out, 'sti-accuracy-vs-memory.svg'),
      lineChart(series, {
        title: 'STI: KL vs weight memory (mixed vs uniform widths)',
        xLabel: 'weight memory budget (share of fp32)',
        yLabel: 'KL(fp32 || quantized), nats',
        logX: true,
        logY: true,
      }),
    );
    charts.push('sti-accuracy-vs-memory.svg');
  }
  lines.push('');
  if (r.coldModel === null || r.cold.length === 0) {
    lines.push('Cold start: not run.');
  } else {
    lines.push(
      `Cold start on ${r.coldModel}: each configuration in a fresh process, time from process start (performance.now()) to the first token's logits of a 16-token prompt; ` +
        `page cache ${r.cacheDropped ? 'dropped before every run (echo 3 > /proc/sys/vm/drop_caches)' : 'NOT dropped (no permission): file reads may be cached'}; median of ${r.cold[0]?.runs ?? 0} runs. ` +
        `"ready" is when the model is loaded (sessions created, resident and preload shards read); "first token" is the prefill after that.`,
      '',
      '| configuration | TTFT from process start ms | ready ms | first token ms | shard bytes read |',
      '|---|---|---|---|---|',
      ...r.cold.map(
        (c) =>
          `| ${c.config} | ${f(c.ttftMs, 0)} | ${f(c.readyMs, 0)} | ${f(c.firstTokenMs, 0)} | ${c.config.startsWith('(a)') ? 'all (dense weights.bin)' : c.bytesRead} |`,
      ),
    );
  }
  lines.push('');
  return { lines, charts };
}
