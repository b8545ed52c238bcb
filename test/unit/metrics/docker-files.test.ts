import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

test('docker/prometheus.yml passes promtool check config', (t) => {
  const res = promtool(['check', 'config', path.join(dockerDir, 'prometheus.yml')]);
  if (res === null) {
    t.skip('promtool not on PATH (Debian package `prometheus`); cannot validate docker/prometheus.yml');
    return;
  }
  assert.equal(res.status, 0, res.output);
  // The check is real: a broken config fails it.
  const dir = mkdtempSync(path.join(tmpdir(), 'capserve-prom-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const broken = path.join(dir, 'broken.yml');
  writeFileSync(broken, 'scrape_configs:\n  - job_name: x\n    scrape_interval: often\n');
  assert.notEqual(promtool(['check', 'config', broken])?.status, 0);
});

test('prometheus.yml scrapes capserve /metrics at the compose service address', () => {
  const prom = YAML.parse(readFileSync(path.join(dockerDir, 'prometheus.yml'), 'utf8')) as {
    scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
  };
  const job = prom.scrape_configs.find((j) => j.job_name === 'capserve');
  assert.ok(job);
  assert.equal(job.metrics_path ?? '/metrics', '/metrics');
  assert.deepEqual(job.static_configs[0]?.targets, ['capserve:8000']);
});

test('compose.yaml: capserve built from docker/Dockerfile, Prometheus mounting prometheus.yml', () => {
  const compose = YAML.parse(readFileSync(path.join(dockerDir, 'compose.yaml'), 'utf8')) as {
    services: Record<string, { build?: { context: string; dockerfile: string }; image?: string; volumes?: string[]; ports?: string[] }>;
  };
  const capserve = compose.services['capserve'];
  assert.ok(capserve?.build);
  assert.equal(path.resolve(dockerDir, capserve.build.context, capserve.build.dockerfile), path.join(dockerDir, 'Dockerfile'));
  assert.ok(capserve.ports?.includes('8000:8000'));
  const prometheus = compose.services['prometheus'];
  assert.match(prometheus?.image ?? '', /^prom\/prometheus:/);
  assert.ok(prometheus?.volumes?.some((v) => v.startsWith('./prometheus.yml:/etc/prometheus/prometheus.yml')));
});

test('Dockerfile: multi-stage, non-root, health check on /health', () => {
  const text = readFileSync(path.join(dockerDir, 'Dockerfile'), 'utf8');
  const stages = text.split('\n').filter((l) => /^FROM\s/.test(l));
  assert.ok(stages.length >= 2, 'at least a build and a runtime stage');
  const users = text.split('\n').filter((l) => /^USER\s/.test(l));
  assert.ok(users.length > 0 && !/root|\b0\b/.test(users.at(-1) ?? ''), 'runs as a non-root user');
  assert.match(text, /^HEALTHCHECK .*\n?.*\/health/m);
  assert.match(text, /COPY --from=build/);
});
