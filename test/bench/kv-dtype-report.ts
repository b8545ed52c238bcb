/** The KV storage section of the CAP report: decode ms/token per KV dtype against the fp32 cache, same-run ratios, and bytes per token. */
import type { KvDtypeResult } from './kv-dtype-bench.js';

const f = (n: number | undefined, d: number): string => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));

export function kvDtypeSection(r: KvDtypeResult | { error: string }): string[] {
  const lines = ['## KV storage dtype (decode at long context)', ''];
  if ('error' in r) return [...lines, `KV dtype bench failed: ${r.error}`, ''];
  const names = ['fp32', 'fp16', 'kivi-8', 'kivi-4'];
  lines.push(
    `One decode step on ${r.model} over a synthetic cache, the series taking turns in blocks of 4 steps (rotating order; the first step of a block and the first round not counted), about ${r.steps} steps per context; ` +
      `ratio = median over rounds of (series / fp32 in the same round). fp16: the graph's past inputs are float16, cast to float32 in the graph. ` +
      `KIVI runs on the fp32 cache (the quantized values are written back in place): its cost is the fp32 step plus quantizing what left the residual. ` +
      `Bytes per token: allocated for fp32 and fp16; computed for KIVI packed (codes plus fp16 scales and zero points), which this engine does not allocate yet.`,
    '',
    `| context | ${names.map((n) => `${n} ms (x fp32)`).join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
    ...r.points.map((p) => `| ${p.context} | ${names.map((n) => `${f(p.stepMs[n], 1)} (${f(p.ratioVsFp32[n], 3)}x)`).join(' | ')} |`),
    `| bytes/token | ${names.map((n) => `${r.bytesPerToken[n] ?? 'n/a'}`).join(' | ')} |`,
    '',
  );
  return lines;
}
