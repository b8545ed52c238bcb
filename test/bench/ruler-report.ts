/**
 * The long-context CAP table and its charts from ruler-bench results: one row per
 * policy x budget x context, every figure measured for that row; the frontier
 * (accuracy vs decode latency, one curve per method) and accuracy vs budget per task.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cell, RulerBenchResult } from './ruler-bench.js';
import { lineChart, type Series } from './svg-chart.js';

const f = (n: number | null | undefined, d = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));
const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(2);

export function capTable(results: readonly RulerBenchResult[]): string[] {
  if (results.length === 0) return [];
  const rows = [
    '| context | policy | budget | A: accuracy [95% CI] (n) | A: KL | A: top-1 | P: TTFT ms | P: decode ms/tok | C: KV MiB peak / decode | kept | errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const fullRow = r.cells.find((c) => c.policy === 'full');
    for (const c of r.cells) {
      const ttftRatio = fullRow && c !== fullRow ? ` (${f(c.ttftMsP50 / fullRow.ttftMsP50, 2)}x)` : '';
      const decRatio =
        fullRow && c !== fullRow && c.decodeMsP50 !== null && fullRow.decodeMsP50 !== null ? ` (${f(c.decodeMsP50 / fullRow.decodeMsP50, 2)}x)` : '';
      rows.push(
        `| ${r.context} | ${c.policy === 'full' ? 'full' : c.method} | ${c.policy === 'full' ? 1 : c.budget} | ${f(c.accuracy, 3)} [${f(c.ci95[0], 2)}, ${f(c.ci95[1], 2)}] (${c.items}) | ${f(c.klMean, 4)} | ${f(c.top1Mean, 3)} | ${f(c.ttftMsP50, 0)}${ttftRatio} | ${f(c.decodeMsP50, 2)}${decRatio} | ${mib(c.peakKvBytesP50)} / ${mib(c.finalKvBytesP50)} | ${f(c.keptMean, 3)} | ${c.errors} |`,
      );
    }
  }
  rows.push('', 'Ratios in parentheses: the policy over full attention at the same context, in the same process.');
  const tasks = [...new Set(results.flatMap((r) => r.cells.flatMap((c) => Object.keys(c.byTask))))];
  rows.push('', '### Accuracy per task', '', `| context | policy | budget | ${tasks.join(' | ')} |`, `|---|---|---|${tasks.map(() => '---').join('|')}|`);
  for (const r of results) {
    for (const c of r.cells) {
      rows.push(
        `| ${r.context} | ${c.policy === 'full' ? 'full' : c.method} | ${c.policy === 'full' ? 1 : c.budget} | ${tasks.map((t) => (c.byTask[t] ? `${f(c.byTask[t]?.accuracy, 2)} (${c.byTask[t]?.n})` : '')).join(' | ')} |`,
      );
    }
  }
  return rows;
}

function byMethod(cells: readonly Cell[]): Map<string, Cell[]> {
  const m = new Map<string, Cell[]>();
  for (const c of cells) {
    if (c.policy === 'full') continue;
    const list = m.get(c.method) ?? [];
    list.push(c);
    m.set(c.method, list);
  }
  return m;
}

/** Writes the frontier and per-task charts for the longest context measured; returns their file names. */
export function frontierCharts(results: readonly RulerBenchResult[], out: string): string[] {
  const longest = [...results].sort((a, b) => b.context - a.context)[0];
  if (!longest) return [];
  const files: string[] = [];
  const full = longest.cells.find((c) => c.policy === 'full');
  const methods = byMethod(longest.cells);
  const frontier: Series[] = [...methods.entries()].map(([name, cells]) => ({
    name,
    points: cells
      .filter((c) => c.decodeMsP50 !== null)
      .map((c) => [c.decodeMsP50 ?? 0, c.accuracy] as const)
      .sort((a, b) => a[0] - b[0]),
  }));
  if (full && full.decodeMsP50 !== null) frontier.push({ name: 'full', points: [[full.decodeMsP50, full.accuracy]] });
  const name = `frontier-${longest.context}.svg`;
  writeFileSync(
    join(out, name),
    lineChart(frontier, {
      title: `CAP frontier at ${longest.context} tokens: accuracy vs decode latency`,
      xLabel: 'decode ms/token (p50)',
      yLabel: 'task accuracy',
    }),
  );
  files.push(name);
  const tasks = [...new Set(longest.cells.flatMap((c) => Object.keys(c.byTask)))];
  for (const task of tasks) {
    const series: Series[] = [...methods.entries()].map(([m, cells]) => ({
      name: m,
      points: cells.flatMap((c) => (c.byTask[task] ? [[c.budget, c.byTask[task]?.accuracy ?? 0] as const] : [])).sort((a, b) => a[0] - b[0]),
    }));
    const file = `accuracy-vs-budget-${task}-${longest.context}.svg`;
    writeFileSync(
      join(out, file),
      lineChart(series, {
        title: `${task} at ${longest.context} tokens: accuracy vs budget`,
        xLabel: 'budget (share of the prompt)',
        yLabel: 'accuracy',
        logX: true,
      }),
    );
    files.push(file);
  }
  return files;
}
