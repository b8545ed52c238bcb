/**
 * CI's smoke check of `npm run bench -- --quick`: the report, results and
 * charts exist and are well-formed, and no benchmark failed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2] ?? 'bench-out';
const problems: string[] = [];
const report = readFileSync(join(dir, 'report.md'), 'utf8');
for (const heading of [
  '# capserve CAP report',
  '## CAP table',
  '## Engine',
  '## Graph and runtime',
  '## Serving load',
  '## Serving: no stall and prefix cache',
  '## Context compression',
  '## MoE expert offload',
  '## Elastic weights (STI)',
  '## KV storage dtype (decode at long context)',
  '## Charts',
]) {
  if (!report.includes(heading)) problems.push(`report.md lacks "${heading}"`);
}
if (/failed/i.test(report)) problems.push('report.md says a benchmark failed');
const results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as Record<string, unknown>;
for (const key of ['base', 'engine', 'graph', 'memory', 'load', 'serving', 'fidelity', 'latency', 'kvDtype', 'compression', 'moe', 'sti']) {
  const v = results[key];
  if (v === undefined || (typeof v === 'object' && v !== null && 'error' in v)) problems.push(`results.json: ${key} missing or failed`);
}
for (const key of ['graph', 'memory']) {
  const v = results[key];
  if (Array.isArray(v) && v.length === 0) problems.push(`results.json: ${key} is empty (graph-bench or variant-memory-bench failed)`);
}
const ruler = results['ruler'];
if (Array.isArray(ruler) && ruler.length > 0 && !/\| full \| 1 \|/.test(report)) problems.push('the CAP table has no full-attention baseline row');
if (!Array.isArray(ruler) || ruler.length === 0) {
  if (typeof results['rulerSkipped'] !== 'string') problems.push('results.json: the long-context CAP table (ruler) is missing');
  else process.stderr.write(`bench report check: long-context table skipped: ${String(results['rulerSkipped'])}\n`);
}
const svgs = readdirSync(dir).filter((f) => f.endsWith('.svg'));
if (svgs.length < 4) problems.push(`expected 4 charts, found ${svgs.length}`);
for (const s of svgs) {
  const text = readFileSync(join(dir, s), 'utf8');
  if (!text.startsWith('<svg') || !text.trimEnd().endsWith('</svg>') || !text.includes('<path')) problems.push(`${s} is not a drawn SVG chart`);
}
if (problems.length > 0) {
  process.stderr.write(`bench report check failed:\n- ${problems.join('\n- ')}\n`);
  process.exit(1);
}
process.stdout.write(`bench report check: ${dir} has report.md, results.json and ${svgs.length} charts\n`);
