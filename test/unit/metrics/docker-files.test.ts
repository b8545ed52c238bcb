import t from 'tap';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';

// No Docker engine runs here: these tests validate what can be validated
// without one (Prometheus config with promtool, compose and Dockerfile shape).
const dockerDir = path.resolve(process.cwd(), 'docker');

function promtool(args: string[]): { status: number | null; output: string } | null {
  const res = spawnSync('promtool', args, { encoding: 'utf8' });
  if (res.error && (res.error as NodeJS.ErrnoException).code === 'ENOENT') return null;
  return { status: res.status, output: `${res.stdout}${res.stderr}` };
}

const promDir = path.join(dockerDir, 'prometheus');

t.test('docker/prometheus/prometheus.yml and rules.yml pass promtool check config and check rules', async (t) => {
  const config = promtool(['check', 'config', path.join(promDir, 'prometheus.yml')]);
  if (config === null) {
    t.plan(0, 'promtool not on PATH (Debian package `prometheus`); cannot validate docker/prometheus/');
    return;
  }
  assert.equal(config.status, 0, config.output);
  assert.match(config.output, /SUCCESS: 1 rule files found/, 'the config loads the recording rules');
  const rules = promtool(['check', 'rules', path.join(promDir, 'rules.yml')]);
  assert.equal(rules?.status, 0, rules?.output);
  // The checks are real: a broken config and a broken rule fail them.
  const dir = mkdtempSync(path.join(tmpdir(), 'capserve-prom-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const broken = path.join(dir, 'broken.yml');
  writeFileSync(broken, 'scrape_configs:\n  - job_name: x\n    scrape_interval: often\n');
  assert.notEqual(promtool(['check', 'config', broken])?.status, 0);
  const brokenRule = path.join(dir, 'rules.yml');
  writeFileSync(brokenRule, 'groups:\n  - name: x\n    rules:\n      - record: a:b\n        expr: sum by (policy (rate(x[5m]))\n');
  assert.notEqual(promtool(['check', 'rules', brokenRule])?.status, 0);
});

t.test('prometheus.yml scrapes capserve /metrics at the compose service address and loads rules.yml', async () => {
  const prom = YAML.parse(readFileSync(path.join(promDir, 'prometheus.yml'), 'utf8')) as {
    rule_files?: string[];
    scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
  };
  const job = prom.scrape_configs.find((j) => j.job_name === 'capserve');
  assert.ok(job);
  assert.equal(job.metrics_path ?? '/metrics', '/metrics');
  assert.deepEqual(job.static_configs[0]?.targets, ['capserve:8000']);
  assert.deepEqual(prom.rule_files, ['rules.yml']);
});

t.test('compose.yaml: capserve from docker/Dockerfile, Prometheus with its config dir, Grafana with provisioning and dashboards', async () => {
  type Service = { build?: { context: string; dockerfile: string }; image?: string; volumes?: string[]; ports?: string[]; depends_on?: string[] };
  const compose = YAML.parse(readFileSync(path.join(dockerDir, 'compose.yaml'), 'utf8')) as { services: Record<string, Service> };
  const capserve = compose.services['capserve'];
  assert.ok(capserve?.build);
  assert.equal(path.resolve(dockerDir, capserve.build.context, capserve.build.dockerfile), path.join(dockerDir, 'Dockerfile'));
  // Published on loopback only by default (issue 12: no key, so never on every interface).
  assert.ok(capserve.ports?.includes('127.0.0.1:8000:8000'));
  const prometheus = compose.services['prometheus'];
  assert.match(prometheus?.image ?? '', /^prom\/prometheus:/);
  assert.ok(prometheus?.volumes?.includes('./prometheus:/etc/prometheus:ro'));
  const grafana = compose.services['grafana'];
  assert.match(grafana?.image ?? '', /^grafana\/grafana:/);
  assert.ok(grafana?.ports?.includes('127.0.0.1:3000:3000'));
  assert.ok(grafana?.depends_on?.includes('prometheus'));
  // Every bind mount points at something that exists in docker/.
  const mounts = new Map((grafana?.volumes ?? []).filter((v) => v.startsWith('./')).map((v) => [v.split(':')[1] as string, v.split(':')[0] as string]));
  for (const host of mounts.values()) assert.ok(existsSync(path.join(dockerDir, host)), host);
  // The dashboard provider reads the directory the dashboards are mounted at.
  const provider = YAML.parse(readFileSync(path.join(dockerDir, 'grafana/provisioning/dashboards/capserve.yml'), 'utf8')) as {
    providers: { options: { path: string } }[];
  };
  const dashboardsIn = provider.providers[0]?.options.path ?? '';
  assert.equal(mounts.get(dashboardsIn), './grafana/dashboards');
  assert.equal(mounts.get('/etc/grafana/provisioning'), './grafana/provisioning');
  const datasources = YAML.parse(readFileSync(path.join(dockerDir, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as {
    datasources: { type: string; url: string }[];
  };
  assert.deepEqual(
    datasources.datasources.map((d) => [d.type, d.url]),
    [['prometheus', 'http://prometheus:9090']],
  );
});

t.test('Dockerfile: multi-stage, non-root, health check on /health', async () => {
  const text = readFileSync(path.join(dockerDir, 'Dockerfile'), 'utf8');
  const stages = text.split('\n').filter((l) => /^FROM\s/.test(l));
  assert.ok(stages.length >= 2, 'at least a build and a runtime stage');
  const users = text.split('\n').filter((l) => /^USER\s/.test(l));
  assert.ok(users.length > 0 && !/root|\b0\b/.test(users.at(-1) ?? ''), 'runs as a non-root user');
  assert.match(text, /^HEALTHCHECK .*\n?.*\/health/m);
  assert.match(text, /COPY --from=build/);
  assert.match(text, /^COPY policies \.\/policies$/m, 'the server loads the policy files at start');
});
