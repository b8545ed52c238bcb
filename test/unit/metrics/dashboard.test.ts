/**
 * docker/grafana/dashboards/capserve.json: parses, is laid out sanely, and
 * every expression names metrics capserve exports (METRIC_NAMES) or recording
 * rules Prometheus computes (docker/prometheus/rules.yml); with promtool on
 * PATH the expressions are also checked as PromQL.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { createMetrics, METRIC_NAMES } from '../../../src/metrics/metrics.js';

const dockerDir = path.resolve(process.cwd(), 'docker');

interface Target {
  refId: string;
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string }[] };
}

function load(): { dashboard: Dashboard; rules: Map<string, string> } {
  const dashboard = JSON.parse(readFileSync(path.join(dockerDir, 'grafana/dashboards/capserve.json'), 'utf8')) as Dashboard;
  const doc = YAML.parse(readFileSync(path.join(dockerDir, 'prometheus/rules.yml'), 'utf8')) as { groups: { rules: { record: string; expr: string }[] }[] };
  const rules = new Map(doc.groups.flatMap((g) => g.rules.map((r) => [r.record, r.expr] as const)));
  return { dashboard, rules };
}

/** Series names capserve exports: counters as named, histograms with _bucket, _sum and _count. */
async function exportedSeries(): Promise<Map<string, string>> {
  const metrics = createMetrics({ policy: 'full', snapshot: () => null });
  const out = new Map<string, string>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    if (String(m.type) === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) out.set(`${m.name}${suffix}`, m.name);
    else out.set(m.name, m.name);
  }
  assert.deepEqual([...new Set(out.values())].sort(), Object.values(METRIC_NAMES).sort());
  return out;
}

/** Identifiers in an expression that name capserve series or recording rules. */
function names(expr: string): string[] {
  return [...expr.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((n) => n.includes('capserve_'));
}

const panelsWithQueries = (d: Dashboard): Panel[] => d.panels.filter((p) => p.type !== 'row');

t.test('the dashboard parses; panels have unique ids, targets with expressions, the datasource variable, and do not overlap', async () => {
  const { dashboard } = load();
  assert.equal(dashboard.uid, 'capserve');
  assert.deepEqual(
    dashboard.templating.list.map((v) => [v.name, v.type]),
    [
      ['datasource', 'datasource'],
      ['policy', 'query'],
    ],
  );
  const ids = dashboard.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  const cells = new Set<string>();
  for (const p of dashboard.panels) {
    const { x, y, w, h } = p.gridPos;
    assert.ok(x >= 0 && w > 0 && x + w <= 24, `${p.title}: within 24 columns`);
    for (let i = x; i < x + w; i++) {
      for (let j = y; j < y + h; j++) {
        assert.ok(!cells.has(`${i},${j}`), `${p.title} overlaps another panel at ${i},${j}`);
        cells.add(`${i},${j}`);
      }
    }
  }
  for (const p of panelsWithQueries(dashboard)) {
    assert.equal(p.datasource?.uid, '${datasource}', p.title);
    assert.ok((p.targets?.length ?? 0) > 0, `${p.title} has queries`);
    for (const t of p.targets ?? []) assert.ok(t.expr.trim().length > 0, `${p.title} ${t.refId}`);
  }
  assert.deepEqual(
    dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title.slice(0, 2)),
    ['P:', 'C:', 'A:'],
  );
});

t.test('every expression (dashboard and recording rules) names an exported metric or a recording rule', async () => {
  const { dashboard, rules } = load();
  const series = await exportedSeries();
  for (const [record, expr] of rules) {
    assert.match(record, /^[a-z_]+:capserve_[a-z0-9_]+:[a-z0-9_]+$/, `${record}: level:metric:operations`);
    for (const n of names(expr)) assert.ok(series.has(n), `rule ${record} uses ${n}, which capserve does not export`);
  }
  for (const p of panelsWithQueries(dashboard)) {
    for (const t of p.targets ?? []) {
      const used = names(t.expr);
      assert.ok(used.length > 0, `${p.title}: ${t.expr} names no capserve metric`);
      for (const n of used) assert.ok(series.has(n) || rules.has(n), `${p.title}: ${n} is neither exported nor a recording rule`);
      if (t.expr.includes('policy')) assert.ok(t.expr.includes('$policy') || !/\{/.test(t.expr), `${p.title}: filters by the $policy variable`);
    }
  }
});

t.test('C, A and P each have their panels: the metrics behind them, through the recording rules', async () => {
  const { dashboard, rules } = load();
  const series = await exportedSeries();
  const behind = new Set<string>();
  const resolve = (n: string): void => {
    const expr = rules.get(n);
    if (expr !== undefined) for (const m of names(expr)) resolve(m);
    else if (series.has(n)) behind.add(series.get(n) as string);
  };
  for (const p of panelsWithQueries(dashboard)) for (const t of p.targets ?? []) for (const n of names(t.expr)) resolve(n);
  const required = [
    // P
    METRIC_NAMES.timeToFirstToken,
    METRIC_NAMES.interTokenLatency,
    METRIC_NAMES.e2eRequestLatency,
    METRIC_NAMES.generationTokens,
    METRIC_NAMES.kvCacheBytes,
    METRIC_NAMES.compressionSeconds,
    METRIC_NAMES.expertCacheHits,
    METRIC_NAMES.expertPrefetchHits,
    METRIC_NAMES.expertCacheMisses,
    METRIC_NAMES.expertBytesLoaded,
    METRIC_NAMES.expertLoadStall,
    METRIC_NAMES.expertPrefetchAccuracy,
    // C
    METRIC_NAMES.compressionRatio,
    METRIC_NAMES.kvTokensRetained,
    METRIC_NAMES.longestLiveContext,
    METRIC_NAMES.promptTokensDropped,
    METRIC_NAMES.overflowRequests,
    METRIC_NAMES.expertResidentBytes,
    // A
    METRIC_NAMES.attentionMassRetained,
    METRIC_NAMES.shadowKlDivergence,
    METRIC_NAMES.shadowTop1Agreement,
  ];
  for (const m of required) assert.ok(behind.has(m), `no panel shows ${m}`);
});

t.test('promtool accepts every dashboard expression as PromQL (Grafana variables substituted)', async (t) => {
  const { dashboard } = load();
  const exprs = panelsWithQueries(dashboard).flatMap((p) =>
    (p.targets ?? []).map((tg) => tg.expr.replaceAll('$__rate_interval', '5m').replaceAll('$policy', '.*')),
  );
  const dir = mkdtempSync(path.join(tmpdir(), 'capserve-dash-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'panels.yml');
  writeFileSync(file, YAML.stringify({ groups: [{ name: 'panels', rules: exprs.map((expr, i) => ({ record: `panel:expr:${i}`, expr })) }] }));
  const res = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
  if (res.error && (res.error as NodeJS.ErrnoException).code === 'ENOENT') {
    t.plan(0, 'promtool not on PATH (Debian package `prometheus`); cannot parse the dashboard expressions');
    return;
  }
  assert.equal(res.status, 0, `${res.stdout}${res.stderr}`);
  assert.match(res.stdout, new RegExp(`SUCCESS: ${exprs.length} rules found`));
});
