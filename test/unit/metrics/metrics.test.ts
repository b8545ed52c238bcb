import t from 'tap';
import assert from 'node:assert/strict';
import { register as globalRegistry } from 'prom-client';
import {
  COMPRESSION_RATIO_BUCKETS,
  createMetrics,
  FRACTION_BUCKETS,
  INTER_TOKEN_BUCKETS,
  KL_BUCKETS,
  METRIC_NAMES,
  REQUEST_LATENCY_BUCKETS,
  TTFT_BUCKETS,
} from '../../../src/metrics/metrics.js';
import { observePolicyReport } from '../../../src/metrics/policy-report.js';
import { SequenceTimer } from '../../../src/metrics/sequence-timer.js';

const idle = { policy: 'full', snapshot: () => ({ running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0 }) };

/** What an MoE runner reports through EngineHealth.runner (names from src/runtime/moe-runner.ts stats()). */
const RUNNER = {
  expertCacheHits: 10,
  expertCacheMisses: 4,
  expertPrefetchHits: 3,
  expertBytesLoaded: 4096,
  expertLoadStallMs: 250,
  expertPredictionAccuracy: 0.75,
  expertResidentBytes: 65536,
  expertBudgetBytes: 65536,
  residentWeightBytes: 1234,
  stiResidentBytes: 32768,
  stiBytesLoaded: 8192,
  stiBytesReadPerPass: 1024,
  stiIoStallMs: 12,
  stiShardsAt32Bits: 3,
  stiShardsAt8Bits: 2,
  stiShardsAt4Bits: 1,
  stiShardsAt2Bits: 0,
};

t.test('every metric is prefixed capserve_, carries a policy label, and lives in its own registry', async () => {
  const metrics = createMetrics({ policy: 'full', snapshot: () => ({ running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0, runner: RUNNER }) });
  const json = await metrics.registry.getMetricsAsJSON();
  const names = json.map((m) => m.name).sort();
  assert.deepEqual(names, Object.values(METRIC_NAMES).sort());
  for (const name of names) assert.match(name, /^capserve_/);
  assert.equal(globalRegistry.getSingleMetric(METRIC_NAMES.timeToFirstToken), undefined);
  // Two apps in one process (tests) must not collide.
  createMetrics(idle);

  const timer = new SequenceTimer(metrics, 'full', 0);
  timer.token(10);
  timer.token(30);
  timer.done('stop', { promptTokens: 5, completionTokens: 2 }, 4, 50);
  metrics.requestErrors.inc({ policy: 'full', code: 'queue_full' });
  observePolicyReport(metrics, {
    policy: 'full',
    kind: 'none',
    promptTokens: 5,
    kvTokensRetained: 6,
    contextTokens: 6,
    compressionRatio: 1,
    attentionMassRetained: 1,
    details: {},
  });
  metrics.liveContexts.start('full', 5).end();
  metrics.shadowKlDivergence.observe({ policy: 'full' }, 0.01);
  metrics.shadowTop1Agreement.observe({ policy: 'full' }, 1);
  metrics.shadowRequests.inc({ policy: 'full', outcome: 'scored' });
  observePolicyReport(metrics, {
    policy: 'full',
    kind: 'context-compression',
    promptTokens: 50,
    kvTokensRetained: 20,
    contextTokens: 20,
    compressionRatio: 0.4,
    attentionMassRetained: null,
    details: { originalTokens: 50, compressedTokens: 20, compressMs: 12 },
  });
  metrics.overflowRequests.inc({ policy: 'full', mode: 'truncate' });
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    assert.ok(metric.values.length > 0, `${metric.name} has a sample`);
    for (const v of metric.values) assert.equal(v.labels['policy'], 'full', `${metric.name} sample has policy`);
  }
});

t.test('histogram buckets follow vLLM', async () => {
  assert.deepEqual(TTFT_BUCKETS.slice(0, 4), [0.001, 0.005, 0.01, 0.02]);
  assert.equal(TTFT_BUCKETS.at(-1), 2560);
  assert.deepEqual(INTER_TOKEN_BUCKETS.slice(0, 3), [0.01, 0.025, 0.05]);
  assert.equal(REQUEST_LATENCY_BUCKETS[0], 0.3);
  assert.equal(REQUEST_LATENCY_BUCKETS.at(-1), 7680);
  const metrics = createMetrics(idle);
  metrics.timeToFirstToken.observe({ policy: 'full' }, 0.003);
  metrics.e2eRequestLatency.observe({ policy: 'full' }, 100);
  const text = await metrics.registry.metrics();
  assert.match(text, /capserve_time_to_first_token_seconds_bucket\{le="0\.001",policy="full"\} 0/);
  assert.match(text, /capserve_time_to_first_token_seconds_bucket\{le="0\.005",policy="full"\} 1/);
  assert.match(text, /capserve_e2e_request_latency_seconds_bucket\{le="60",policy="full"\} 0/);
  assert.match(text, /capserve_e2e_request_latency_seconds_bucket\{le="120",policy="full"\} 1/);
  assert.match(text, /capserve_e2e_request_latency_seconds_bucket\{le="7680",policy="full"\} 1/);
});

t.test('SequenceTimer: TTFT from arrival, inter-token gaps, outcome recorded once', async () => {
  const metrics = createMetrics(idle);
  const timer = new SequenceTimer(metrics, 'full', 1000);
  timer.token(1250);
  timer.token(1300);
  timer.token(1400);
  timer.done('length', { promptTokens: 7, completionTokens: 3 }, 20, 1500);
  timer.done('stop', { promptTokens: 7, completionTokens: 3 }, 20, 1600);
  type Sample = { value: number; labels: Record<string, string | number>; metricName?: string };
  const get = async (name: string): Promise<Sample[]> => ((await metrics.registry.getSingleMetric(name)?.get())?.values ?? []) as Sample[];
  const ttft = await get(METRIC_NAMES.timeToFirstToken);
  assert.equal(ttft.find((v) => v.metricName?.endsWith('_sum'))?.value, 0.25);
  const itl = await get(METRIC_NAMES.interTokenLatency);
  assert.equal(itl.find((v) => v.metricName?.endsWith('_count'))?.value, 2);
  assert.ok(Math.abs((itl.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0) - 0.15) < 1e-9);
  const e2e = await get(METRIC_NAMES.e2eRequestLatency);
  assert.equal(e2e.find((v) => v.metricName?.endsWith('_sum'))?.value, 0.5);
  assert.equal(e2e.find((v) => v.metricName?.endsWith('_count'))?.value, 1);
  const queue = await get(METRIC_NAMES.requestQueueTime);
  assert.equal(queue.find((v) => v.metricName?.endsWith('_sum'))?.value, 0.02);
  assert.deepEqual(
    (await get(METRIC_NAMES.promptTokens)).map((v) => v.value),
    [7],
  );
  assert.deepEqual(
    (await get(METRIC_NAMES.generationTokens)).map((v) => v.value),
    [3],
  );
  const success = await get(METRIC_NAMES.requestSuccess);
  assert.deepEqual(
    success.map((v) => [v.labels['finished_reason'], v.value]),
    [['length', 1]],
  );
});

t.test('engine gauges are read from the source at scrape time', async () => {
  let state: { running: number; waiting: number; kvBytesUsed: number; kvBytesCapacity: number; kvGatheredBytes?: number } = {
    running: 2,
    waiting: 3,
    kvBytesUsed: 250,
    kvBytesCapacity: 1000,
    kvGatheredBytes: 96,
  };
  const metrics = createMetrics({ policy: 'full', snapshot: () => state });
  let text = await metrics.registry.metrics();
  assert.match(text, /capserve_num_requests_running\{policy="full"\} 2/);
  assert.match(text, /capserve_num_requests_waiting\{policy="full"\} 3/);
  assert.match(text, /capserve_kv_cache_bytes\{policy="full"\} 250/);
  assert.match(text, /capserve_kv_cache_capacity_bytes\{policy="full"\} 1000/);
  assert.match(text, /capserve_kv_cache_usage_ratio\{policy="full"\} 0\.25/);
  assert.match(text, /capserve_kv_gathered_bytes\{policy="full"\} 96/);
  state = { running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0 };
  text = await metrics.registry.metrics();
  assert.match(text, /capserve_num_requests_running\{policy="full"\} 0/);
  assert.match(text, /capserve_kv_cache_usage_ratio\{policy="full"\} 0/);
  assert.match(text, /capserve_kv_gathered_bytes\{policy="full"\} 0/, 'absent: 0');
});

t.test("worker restarts: a counter at 0 from the start that follows the engine's running total", async () => {
  let state: { running: number; waiting: number; kvBytesUsed: number; kvBytesCapacity: number; workerRestarts?: number } | null = null;
  const metrics = createMetrics({ policy: 'full', snapshot: () => state });
  const line = async (): Promise<string | undefined> =>
    (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith(`${METRIC_NAMES.workerRestarts}{`));
  assert.equal(await line(), 'capserve_worker_restarts_total{policy="full"} 0');
  state = { running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0, workerRestarts: 2 };
  assert.equal(await line(), 'capserve_worker_restarts_total{policy="full"} 2');
  assert.equal(await line(), 'capserve_worker_restarts_total{policy="full"} 2', 'a second scrape adds nothing');
  state = null;
  assert.equal(await line(), 'capserve_worker_restarts_total{policy="full"} 2', 'no engine (not attached): unchanged');
  state = { running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0, workerRestarts: 3 };
  assert.equal(await line(), 'capserve_worker_restarts_total{policy="full"} 3');
});

t.test('C and A metrics: policy reports feed KV retained, compression ratio and attention mass; buckets span their ranges', async () => {
  assert.equal(COMPRESSION_RATIO_BUCKETS[0], 0.05);
  assert.equal(COMPRESSION_RATIO_BUCKETS.at(-1), 1);
  assert.equal(FRACTION_BUCKETS.at(-1), 1);
  assert.equal(KL_BUCKETS[0], 1e-4);
  assert.equal(KL_BUCKETS.at(-1), 10);
  const metrics = createMetrics(idle);
  const report = {
    policy: 'snapkv-25',
    kind: 'kv-eviction' as const,
    promptTokens: 100,
    kvTokensRetained: 30,
    contextTokens: 120,
    compressionRatio: 0.25,
    attentionMassRetained: 0.93,
    details: {},
  };
  observePolicyReport(metrics, report);
  observePolicyReport(metrics, { ...report, policy: 'full', kind: 'none', kvTokensRetained: 120, compressionRatio: 1, attentionMassRetained: null });
  const text = await metrics.registry.metrics();
  assert.match(text, /capserve_compression_ratio_bucket\{le="0\.2",policy="snapkv-25"\} 0/);
  assert.match(text, /capserve_compression_ratio_bucket\{le="0\.25",policy="snapkv-25"\} 1/);
  assert.match(text, /capserve_compression_ratio_sum\{policy="full"\} 1/);
  assert.match(text, /capserve_kv_tokens_retained_bucket\{le="32",policy="snapkv-25"\} 1/);
  assert.match(text, /capserve_kv_tokens_retained_bucket\{le="16",policy="snapkv-25"\} 0/);
  assert.match(text, /capserve_attention_mass_retained_bucket\{le="0\.9",policy="snapkv-25"\} 0/);
  assert.match(text, /capserve_attention_mass_retained_bucket\{le="0\.95",policy="snapkv-25"\} 1/);
  assert.doesNotMatch(text, /capserve_attention_mass_retained_count\{policy="full"\}/, 'no eviction, no proxy');
});

t.test('longest live context: the longest running sequence per policy, 0 once idle', async () => {
  const metrics = createMetrics(idle);
  const a = metrics.liveContexts.start('h2o', 100);
  const b = metrics.liveContexts.start('h2o', 40);
  const c = metrics.liveContexts.start('full', 7);
  a.tokens += 5;
  b.tokens += 200;
  let text = await metrics.registry.metrics();
  assert.match(text, /capserve_longest_live_context_tokens\{policy="h2o"\} 240/);
  assert.match(text, /capserve_longest_live_context_tokens\{policy="full"\} 7/);
  b.end();
  text = await metrics.registry.metrics();
  assert.match(text, /capserve_longest_live_context_tokens\{policy="h2o"\} 105/);
  a.end();
  c.end();
  text = await metrics.registry.metrics();
  assert.match(text, /capserve_longest_live_context_tokens\{policy="h2o"\} 0/);
  assert.equal(metrics.liveContexts.size, 0);
});

t.test('compression reports feed tokens dropped and time spent compressing, by policy; other kinds do not', async () => {
  const metrics = createMetrics(idle);
  const report = {
    policy: 'selective-context',
    kind: 'context-compression' as const,
    promptTokens: 700,
    kvTokensRetained: 410,
    contextTokens: 410,
    compressionRatio: 400 / 700,
    attentionMassRetained: null,
    details: { originalTokens: 700, compressedTokens: 400, compressMs: 30 },
  };
  observePolicyReport(metrics, report);
  observePolicyReport(metrics, { ...report, details: { originalTokens: 100, compressedTokens: 90, compressMs: 2000 } });
  observePolicyReport(metrics, { ...report, policy: 'snapkv-25', kind: 'kv-eviction', details: { evictions: 3 } });
  metrics.promptTokensDropped.inc({ policy: 'full', reason: 'truncate' }, 17);
  const text = await metrics.registry.metrics();
  assert.match(text, /capserve_prompt_tokens_dropped_total\{policy="selective-context",reason="compression"\} 310/);
  assert.match(text, /capserve_prompt_tokens_dropped_total\{policy="full",reason="truncate"\} 17/);
  assert.doesNotMatch(text, /capserve_prompt_tokens_dropped_total\{policy="snapkv-25"/);
  assert.match(text, /capserve_compression_seconds_bucket\{le="0\.025",policy="selective-context"\} 0/);
  assert.match(text, /capserve_compression_seconds_bucket\{le="0\.05",policy="selective-context"\} 1/);
  assert.match(text, /capserve_compression_seconds_bucket\{le="2\.5",policy="selective-context"\} 2/);
  assert.match(text, /capserve_compression_seconds_sum\{policy="selective-context"\} 2\.03/);
  assert.doesNotMatch(text, /capserve_compression_seconds_count\{policy="snapkv-25"/);
});

t.test('MoE expert metrics are read from the runner at scrape time, labelled by the expert-offload policy; dense models export none', async () => {
  let runner: Record<string, number> = { ...RUNNER };
  const metrics = createMetrics({
    policy: 'full',
    expertPolicy: 'edgemoe',
    snapshot: () => ({ running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0, runner }),
  });
  let text = await metrics.registry.metrics();
  assert.match(text, /capserve_expert_cache_hits_total\{policy="edgemoe"\} 10/);
  assert.match(text, /capserve_expert_prefetch_hits_total\{policy="edgemoe"\} 3/);
  assert.match(text, /capserve_expert_cache_misses_total\{policy="edgemoe"\} 4/);
  assert.match(text, /capserve_expert_bytes_loaded_total\{policy="edgemoe"\} 4096/);
  assert.match(text, /capserve_expert_load_stall_seconds_total\{policy="edgemoe"\} 0\.25/);
  assert.match(text, /capserve_expert_prefetch_accuracy\{policy="edgemoe"\} 0\.75/);
  assert.match(text, /capserve_expert_resident_bytes\{policy="edgemoe"\} 65536/);
  assert.match(text, /capserve_expert_cache_budget_bytes\{policy="edgemoe"\} 65536/);
  assert.match(text, /capserve_resident_weight_bytes\{policy="edgemoe"\} 1234/);
  assert.match(text, /# TYPE capserve_expert_cache_hits_total counter/);
  // Counters follow the runner's totals; a scrape in between changes nothing.
  runner = { ...runner, expertCacheHits: 25, expertResidentBytes: 49152 };
  await metrics.registry.metrics();
  text = await metrics.registry.metrics();
  assert.match(text, /capserve_expert_cache_hits_total\{policy="edgemoe"\} 25/);
  assert.match(text, /capserve_expert_resident_bytes\{policy="edgemoe"\} 49152/);
  // A runner that starts over (a reloaded model) keeps the counter monotonic.
  runner = { ...runner, expertCacheHits: 2 };
  text = await metrics.registry.metrics();
  assert.match(text, /capserve_expert_cache_hits_total\{policy="edgemoe"\} 27/);

  const dense = createMetrics({ policy: 'full', snapshot: () => ({ running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0, runner: {} }) });
  const denseText = await dense.registry.metrics();
  assert.doesNotMatch(denseText, /^capserve_expert_[a-z_]+\{/m);
  assert.doesNotMatch(denseText, /^capserve_resident_weight_bytes\{/m);
});
