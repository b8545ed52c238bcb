/**
 * deploy/kubernetes validated as CI validates it: every document against the
 * Kubernetes (kubernetes-models, from Kubernetes' OpenAPI schemas) and
 * Prometheus Operator (@kubernetes-models/prometheus-operator, from its CRDs)
 * JSON schemas, then strictly: unknown fields are errors, as `kubeconform
 * -strict` would say, by type-checking each document as an object literal of
 * the same models' TypeScript types (excess-property checks). Then the
 * wiring: names and selectors match, readiness and startup use /health, the
 * scrape and HPA metrics exist in src/metrics, and terminationGracePeriodSeconds
 * covers preStop + server.shutdownGraceMs + the exit.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { parseAllDocuments, parse } from 'yaml';
import { Deployment, type IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler, type IHorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { PodDisruptionBudget, type IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { PodMonitor, type IPodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import { loadConfig } from '../../../src/config/load-config.js';
import { METRIC_NAMES } from '../../../src/metrics/metrics.js';

const DIR = 'deploy/kubernetes';

interface Model {
  validate(): void;
}

/** apiVersion/kind → the model class and the module and type name its strict check imports. */
const KINDS: Readonly<Record<string, { readonly make: (doc: object) => Model; readonly module: string; readonly type: string }>> = {
  'apps/v1/Deployment': { make: (d) => new Deployment(d as IDeployment), module: 'kubernetes-models/apps/v1/Deployment', type: 'IDeployment' },
  'v1/Service': { make: (d) => new Service(d as IService), module: 'kubernetes-models/v1/Service', type: 'IService' },
  'networking.k8s.io/v1/Ingress': {
    make: (d) => new Ingress(d as ConstructorParameters<typeof Ingress>[0]),
    module: 'kubernetes-models/networking.k8s.io/v1/Ingress',
    type: 'IIngress',
  },
  'autoscaling/v2/HorizontalPodAutoscaler': {
    make: (d) => new HorizontalPodAutoscaler(d as IHorizontalPodAutoscaler),
    module: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler',
    type: 'IHorizontalPodAutoscaler',
  },
  'policy/v1/PodDisruptionBudget': {
    make: (d) => new PodDisruptionBudget(d as IPodDisruptionBudget),
    module: 'kubernetes-models/policy/v1/PodDisruptionBudget',
    type: 'IPodDisruptionBudget',
  },
  'monitoring.coreos.com/v1/PodMonitor': {
    make: (d) => new PodMonitor(d as IPodMonitor),
    module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor',
    type: 'IPodMonitor',
  },
};

interface Manifest {
  readonly file: string;
  readonly doc: Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string } };
}

/** The resources kustomization.yaml lists, in order, parsed. */
function manifests(): Manifest[] {
  const kustomization = parse(readFileSync(path.join(DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  return kustomization.resources.flatMap((file) =>
    parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8')).map((d) => {
      assert.deepEqual(d.errors, [], `${file}: YAML errors`);
      return { file, doc: d.toJS() as Manifest['doc'] };
    }),
  );
}

function find<T>(all: Manifest[], kind: string): T {
  const m = all.find((x) => x.doc.kind === kind);
  assert.ok(m, `a ${kind} in ${DIR}`);
  return m.doc as T;
}

t.test('kustomization lists every manifest in deploy/kubernetes (Helm values aside)', async () => {
  const listed = (parse(readFileSync(path.join(DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] }).resources;
  const present = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !f.endsWith('-values.yaml'));
  assert.deepEqual([...listed].sort(), present.sort());
});

t.test('every manifest is valid against the Kubernetes and Prometheus Operator schemas', async () => {
  const all = manifests();
  assert.deepEqual([...new Set(all.map((m) => m.doc.kind))].sort(), [
    'Deployment',
    'HorizontalPodAutoscaler',
    'Ingress',
    'PodDisruptionBudget',
    'PodMonitor',
    'Service',
  ]);
  for (const { file, doc } of all) {
    const kind = KINDS[`${doc.apiVersion}/${doc.kind}`];
    assert.ok(kind, `${file}: no schema for ${doc.apiVersion} ${doc.kind}`);
    assert.doesNotThrow(() => kind.make(doc).validate(), `${file}: ${doc.kind} ${doc.metadata.name}`);
  }
});

t.test('the schema check catches a wrong type (the validator is live)', async () => {
  const deployment = structuredClone(find<IDeployment>(manifests(), 'Deployment'));
  const container = deployment.spec?.template.spec?.containers[0];
  assert.ok(container);
  (container as unknown as { ports: unknown }).ports = [{ containerPort: 'eight thousand' }];
  assert.throws(() => new Deployment(deployment).validate(), /containerPort must be integer/);
});

/** Type-checks each document as an object literal of its model's type; returns the diagnostics, each naming its file. */
function strictCheck(docs: readonly Manifest[]): string[] {
  const virtual = path.resolve('deploy-manifests.check.ts');
  const imports = new Map<string, string>();
  const lines: string[] = [];
  const owners: { line: number; file: string }[] = [];
  docs.forEach(({ file, doc }, i) => {
    const kind = KINDS[`${doc.apiVersion}/${doc.kind}`];
    assert.ok(kind);
    imports.set(kind.module, kind.type);
    owners.push({ line: lines.length, file });
    lines.push(`export const doc${i}: ${kind.type} = ${JSON.stringify(doc, null, 1)};`.replace(/\n/g, ' '));
  });
  const header = [...imports].map(([module, type]) => `import type { ${type} } from '${module}';`);
  const source = [...header, ...lines].join('\n');
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, ...rest) =>
    path.resolve(name) === virtual ? ts.createSourceFile(name, source, version) : getSourceFile(name, version, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === virtual || fileExists(name);
  const program = ts.createProgram([virtual], options, host);
  const sf = program.getSourceFile(virtual);
  assert.ok(sf);
  return [...program.getSemanticDiagnostics(sf), ...program.getSyntacticDiagnostics(sf)].map((d) => {
    const line = d.start === undefined ? 0 : sf.getLineAndCharacterOfPosition(d.start).line - header.length;
    const owner = owners.filter((o) => o.line <= line).at(-1);
    return `${owner?.file ?? '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

t.test('strict: no unknown or misspelled fields anywhere in the manifests', async () => {
  const all = manifests();
  // One program for speed; a copy with a misspelled field shows the check is live and names its file.
  const original = all.find((m) => m.doc.kind === 'Deployment') as Manifest;
  const bad: Manifest = { file: 'deployment.yaml with spec.replica', doc: structuredClone(original.doc) };
  (bad.doc['spec'] as Record<string, unknown>)['replica'] = 3;
  const problems = strictCheck([...all, bad]);
  assert.equal(problems.length, 1, problems.join('\n'));
  assert.match(problems[0] ?? '', /^deployment\.yaml with spec\.replica: .*'"?replica"?' does not exist in type 'IDeploymentSpec'/);
});

t.test('the wiring: selectors, probes on /health, metrics that exist, drain within the grace period', async () => {
  const all = manifests();
  const deployment = find<IDeployment>(all, 'Deployment');
  const labels = deployment.spec?.template.metadata?.labels ?? {};
  assert.deepEqual(deployment.spec?.selector.matchLabels, labels);
  const service = find<IService>(all, 'Service');
  assert.deepEqual(service.spec?.selector, labels);
  assert.deepEqual(find<IPodDisruptionBudget>(all, 'PodDisruptionBudget').spec?.selector?.matchLabels, labels);
  const monitor = find<IPodMonitor>(all, 'PodMonitor');
  assert.deepEqual(monitor.spec.selector.matchLabels, labels);

  const pod = deployment.spec?.template.spec;
  const container = pod?.containers[0];
  assert.ok(pod && container);
  const portName = container.ports?.[0]?.name;
  for (const probe of [container.readinessProbe, container.startupProbe, container.livenessProbe]) {
    assert.equal(probe?.httpGet?.path, '/health');
    assert.equal(probe?.httpGet?.port, portName);
  }
  // Readiness drops on the first failed probe: a draining pod refuses connections at once.
  assert.equal(container.readinessProbe?.failureThreshold, 1);
  assert.equal(service.spec?.ports?.[0]?.targetPort, portName);
  assert.equal(monitor.spec.podMetricsEndpoints?.[0]?.port, portName);
  assert.equal(monitor.spec.podMetricsEndpoints?.[0]?.path, '/metrics');

  // The HPA scales this Deployment on a metric the server exports, served by the adapter rule.
  const hpa = find<IHorizontalPodAutoscaler>(all, 'HorizontalPodAutoscaler');
  assert.equal(hpa.spec?.scaleTargetRef.name, deployment.metadata?.name);
  const metric = hpa.spec?.metrics?.[0]?.pods?.metric.name;
  assert.equal(metric, METRIC_NAMES.requestsWaiting);
  const adapter = parse(readFileSync(path.join(DIR, 'prometheus-adapter-values.yaml'), 'utf8')) as {
    rules: { custom: { seriesQuery: string; name: { as: string } }[] };
  };
  assert.ok(adapter.rules.custom.some((r) => r.name.as === metric && r.seriesQuery.startsWith(`${METRIC_NAMES.requestsWaiting}{`)));

  // SIGTERM drain: preStop sleep + shutdownGraceMs + ~2 s to exit, inside terminationGracePeriodSeconds.
  const args = container.args ?? [];
  const set = args.map((a, i) => (args[i - 1] === '--set' ? a : '')).find((a) => a.startsWith('server.shutdownGraceMs='));
  const graceMs = set !== undefined ? Number(set.split('=')[1]) : loadConfig({}).server.shutdownGraceMs;
  const preStop = container.lifecycle?.preStop?.exec?.command ?? [];
  assert.equal(preStop[0], 'sleep');
  const preStopS = Number(preStop[1]);
  const period = pod.terminationGracePeriodSeconds ?? 30;
  assert.ok(
    preStopS + graceMs / 1000 + 2 < period,
    `preStop ${preStopS} s + drain ${graceMs / 1000} s + exit 2 s must fit in terminationGracePeriodSeconds ${period}`,
  );
});
