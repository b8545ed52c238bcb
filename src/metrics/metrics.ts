import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LiveContexts } from './live-contexts.js';

/**
 * Every capserve metric, defined here and nowhere else. Buckets follow vLLM's
 * so dashboards built for vLLM read ours without edits. Every metric carries a
 * `policy` label: the serving policy that handled the request (or, for the
 * engine-wide gauges, the configured default policy).
 */
export const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
export const INTER_TOKEN_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
export const REQUEST_LATENCY_BUCKETS = [
  0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
];
/** C axis: KV entries per layer a sequence ended with (powers of two up to 1M tokens). */
export const KV_TOKENS_BUCKETS = Array.from({ length: 17 }, (_, i) => 2 ** (i + 4));
/** C axis: kept / covered, from 5% to everything. */
export const COMPRESSION_RATIO_BUCKETS = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0];
/** A axis: fractions in [0, 1], finer near 1 where good policies live. */
export const FRACTION_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0];
/** A axis: KL divergence in nats, half-decades from 1e-4 to 10. */
export const KL_BUCKETS = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
/** P cost of C: seconds spent compressing one prompt (scorer forward passes), 1 ms to a minute. */
export const COMPRESSION_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export const METRIC_NAMES = Object.freeze({
  timeToFirstToken: 'capserve_time_to_first_token_seconds',
  interTokenLatency: 'capserve_inter_token_latency_seconds',
  e2eRequestLatency: 'capserve_e2e_request_latency_seconds',
  requestQueueTime: 'capserve_request_queue_time_seconds',
  promptTokens: 'capserve_prompt_tokens_total',
  generationTokens: 'capserve_generation_tokens_total',
  requestSuccess: 'capserve_request_success_total',
  requestErrors: 'capserve_request_errors_total',
  requestsRunning: 'capserve_num_requests_running',
  requestsWaiting: 'capserve_num_requests_waiting',
  kvCacheBytes: 'capserve_kv_cache_bytes',
  kvCacheCapacityBytes: 'capserve_kv_cache_capacity_bytes',
  kvCacheUsageRatio: 'capserve_kv_cache_usage_ratio',
  kvTokensRetained: 'capserve_kv_tokens_retained',
  compressionRatio: 'capserve_compression_ratio',
  longestLiveContext: 'capserve_longest_live_context_tokens',
  attentionMassRetained: 'capserve_attention_mass_retained',
  shadowKlDivergence: 'capserve_shadow_kl_divergence',
  shadowTop1Agreement: 'capserve_shadow_top1_agreement',
  shadowRequests: 'capserve_shadow_requests_total',
  promptTokensDropped: 'capserve_prompt_tokens_dropped_total',
  compressionSeconds: 'capserve_compression_seconds',
  overflowRequests: 'capserve_overflow_requests_total',
  expertCacheHits: 'capserve_expert_cache_hits_total',
  expertPrefetchHits: 'capserve_expert_prefetch_hits_total',
  expertCacheMisses: 'capserve_expert_cache_misses_total',
  expertBytesLoaded: 'capserve_expert_bytes_loaded_total',
  expertLoadStall: 'capserve_expert_load_stall_seconds_total',
  expertPrefetchAccuracy: 'capserve_expert_prefetch_accuracy',
  expertResidentBytes: 'capserve_expert_resident_bytes',
  expertCacheBudgetBytes: 'capserve_expert_cache_budget_bytes',
  residentWeightBytes: 'capserve_resident_weight_bytes',
  stiResidentBytes: 'capserve_sti_resident_shard_bytes',
  stiBytesRead: 'capserve_sti_shard_bytes_read_total',
  stiBytesReadPerPass: 'capserve_sti_shard_bytes_read_per_pass',
  stiIoStall: 'capserve_sti_io_stall_seconds_total',
  stiShards: 'capserve_sti_shards',
  workerRestarts: 'capserve_worker_restarts_total',
  prefixCacheQueries: 'capserve_prefix_cache_queries_total',
  prefixCacheHitTokens: 'capserve_prefix_cache_hit_tokens_total',
  prefixCacheBytes: 'capserve_prefix_cache_bytes',
  kvGatheredBytes: 'capserve_kv_gathered_bytes',
});

/** Why prompt tokens were dropped before prefill. */
export type DropReason = 'compression' | 'truncate' | 'shift';

/** What happened to a request sampled for shadow fidelity. */
export type ShadowOutcome = 'scored' | 'dropped' | 'failed' | 'skipped';

/** What the engine-wide gauges read at scrape time. */
export interface EngineGaugeSource {
  readonly policy: string;
  /** Label of the MoE expert metrics (the expert-offload policy the engine runs); default: `policy`. */
  readonly expertPolicy?: string;
  snapshot(): {
    running: number;
    waiting: number;
    kvBytesUsed: number;
    kvBytesCapacity: number;
    /** The model runner's counters (MoE expert cache); absent or empty for dense models, which then export no expert series. */
    runner?: Readonly<Record<string, number>>;
    /** Inference workers started to replace a crashed one (a running total; absent: none). */
    workerRestarts?: number;
    /** Bytes the prefix cache holds (inside the KV budget); absent: no prefix cache. */
    prefixCacheBytes?: number;
    /** Bytes of decode batches' gathered pasts (outside the KV budget); absent: none. */
    kvGatheredBytes?: number;
  } | null;
}

export interface CapserveMetrics {
  readonly registry: Registry;
  readonly timeToFirstToken: Histogram<'policy'>;
  readonly interTokenLatency: Histogram<'policy'>;
  readonly e2eRequestLatency: Histogram<'policy'>;
  readonly requestQueueTime: Histogram<'policy'>;
  readonly promptTokens: Counter<'policy'>;
  readonly generationTokens: Counter<'policy'>;
  readonly requestSuccess: Counter<'policy' | 'finished_reason'>;
  readonly requestErrors: Counter<'policy' | 'code'>;
  readonly requestsRunning: Gauge<'policy'>;
  readonly requestsWaiting: Gauge<'policy'>;
  readonly kvCacheBytes: Gauge<'policy'>;
  readonly kvCacheCapacityBytes: Gauge<'policy'>;
  readonly kvGatheredBytes: Gauge<'policy'>;
  readonly kvCacheUsageRatio: Gauge<'policy'>;
  readonly kvTokensRetained: Histogram<'policy'>;
  readonly compressionRatio: Histogram<'policy'>;
  /** Sequences being generated now; the longest-live-context gauge reads them at scrape time. */
  readonly liveContexts: LiveContexts;
  readonly longestLiveContext: Gauge<'policy'>;
  readonly attentionMassRetained: Histogram<'policy'>;
  readonly shadowKlDivergence: Histogram<'policy'>;
  readonly shadowTop1Agreement: Histogram<'policy'>;
  readonly shadowRequests: Counter<'policy' | 'outcome'>;
  readonly promptTokensDropped: Counter<'policy' | 'reason'>;
  readonly compressionSeconds: Histogram<'policy'>;
  readonly overflowRequests: Counter<'policy' | 'mode'>;
  readonly expertCacheHits: Counter<'policy'>;
  readonly expertPrefetchHits: Counter<'policy'>;
  readonly expertCacheMisses: Counter<'policy'>;
  readonly expertBytesLoaded: Counter<'policy'>;
  readonly expertLoadStall: Counter<'policy'>;
  readonly expertPrefetchAccuracy: Gauge<'policy'>;
  readonly expertResidentBytes: Gauge<'policy'>;
  readonly expertCacheBudgetBytes: Gauge<'policy'>;
  readonly residentWeightBytes: Gauge<'policy'>;
  readonly stiResidentBytes: Gauge<'policy'>;
  readonly stiBytesRead: Counter<'policy'>;
  readonly stiBytesReadPerPass: Gauge<'policy'>;
  readonly stiIoStall: Counter<'policy'>;
  readonly stiShards: Gauge<'policy' | 'bits'>;
  readonly workerRestarts: Counter<'policy'>;
  readonly prefixCacheQueries: Counter<'policy' | 'result'>;
  readonly prefixCacheHitTokens: Counter<'policy'>;
  readonly prefixCacheBytes: Gauge<'policy'>;
}

/** A fresh registry (never prom-client's global one, so tests and apps do not collide). */
export function createMetrics(source: EngineGaugeSource): CapserveMetrics {
  const registry = new Registry();
  const registers = [registry];
  const policy = ['policy'] as const;

  type Snapshot = NonNullable<ReturnType<EngineGaugeSource['snapshot']>>;
  // Engine-wide state is read at scrape time (health() is a cheap synchronous
  // call), so the gauges can never drift from what the engine reports.
  const engineGauge = (name: string, help: string, read: (s: Snapshot) => number): Gauge<'policy'> =>
    new Gauge({
      name,
      help,
      labelNames: policy,
      registers,
      collect(this: Gauge<'policy'>) {
        const s = source.snapshot();
        this.set({ policy: source.policy }, s === null ? 0 : read(s));
      },
    });

  const requestsRunning = engineGauge(METRIC_NAMES.requestsRunning, 'Requests currently being decoded by the engine.', (s) => s.running);
  const requestsWaiting = engineGauge(METRIC_NAMES.requestsWaiting, 'Requests queued, waiting for admission.', (s) => s.waiting);
  const kvCacheBytes = engineGauge(METRIC_NAMES.kvCacheBytes, 'KV cache bytes in use.', (s) => s.kvBytesUsed);
  const kvGatheredBytes = engineGauge(
    METRIC_NAMES.kvGatheredBytes,
    "Bytes of decode batches' gathered past: a copy of the batched sequences' KV that the graph reads as one tensor, outside the KV budget (C axis).",
    (s) => s.kvGatheredBytes ?? 0,
  );
  const kvCacheCapacityBytes = engineGauge(METRIC_NAMES.kvCacheCapacityBytes, 'KV cache budget in bytes.', (s) => s.kvBytesCapacity);
  const kvCacheUsageRatio = engineGauge(METRIC_NAMES.kvCacheUsageRatio, 'KV cache bytes in use over the budget (0 to 1).', (s) =>
    s.kvBytesCapacity > 0 ? s.kvBytesUsed / s.kvBytesCapacity : 0,
  );

  // MoE expert counters live in the engine's runner (worker thread) and reach us through health();
  // they are read at scrape time like the gauges above. Counters follow the runner's running totals
  // by increments, starting over when the runner's totals do (a reloaded model).
  const expertLabels = { policy: source.expertPolicy ?? source.policy };
  const runnerValue = (key: string): number | undefined => {
    const v = source.snapshot()?.runner?.[key];
    return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
  };
  const runnerCounter = (name: string, help: string, key: string, scale = 1): Counter<'policy'> => {
    let last = 0;
    return new Counter({
      name,
      help,
      labelNames: policy,
      registers,
      collect(this: Counter<'policy'>) {
        const raw = runnerValue(key);
        if (raw === undefined) return;
        const v = raw * scale;
        this.inc(expertLabels, v >= last ? v - last : v);
        last = v;
      },
    });
  };
  const runnerGauge = (name: string, help: string, key: string): Gauge<'policy'> =>
    new Gauge({
      name,
      help,
      labelNames: policy,
      registers,
      collect(this: Gauge<'policy'>) {
        const v = runnerValue(key);
        if (v !== undefined) this.set(expertLabels, v);
      },
    });

  // Follows the engine's running total by increments; exported at 0 from the start so rate() and alerts see it.
  let restartsSeen = 0;
  const workerRestarts = new Counter({
    name: METRIC_NAMES.workerRestarts,
    help: 'Inference worker threads started to replace a crashed one (the model reloaded, same process).',
    labelNames: policy,
    registers,
    collect(this: Counter<'policy'>) {
      const total = source.snapshot()?.workerRestarts ?? restartsSeen;
      this.inc({ policy: source.policy }, Math.max(0, total - restartsSeen));
      restartsSeen = Math.max(restartsSeen, total);
    },
  });

  // Prefix-cache counters start at 0 for the default policy, so hit rates are defined before the first request.
  const prefixCacheQueries = new Counter({
    name: METRIC_NAMES.prefixCacheQueries,
    help: 'Requests that looked up the prefix cache, by result: hit (some prompt KV reused), miss, bypassed (the policy rewrites the KV and cannot share it) (P axis).',
    labelNames: ['policy', 'result'] as const,
    registers,
  });
  for (const result of ['hit', 'miss', 'bypassed']) prefixCacheQueries.inc({ policy: source.policy, result }, 0);
  const prefixCacheHitTokens = new Counter({
    name: METRIC_NAMES.prefixCacheHitTokens,
    help: 'Prompt tokens whose KV came from the prefix cache instead of a prefill (P axis).',
    labelNames: policy,
    registers,
  });
  prefixCacheHitTokens.inc({ policy: source.policy }, 0);

  const liveContexts = new LiveContexts();
  const longestLiveContext = new Gauge({
    name: METRIC_NAMES.longestLiveContext,
    help: 'Longest context (prompt + generated tokens) among sequences being generated now.',
    labelNames: policy,
    registers,
    collect(this: Gauge<'policy'>) {
      for (const [name, tokens] of liveContexts.longestByPolicy()) this.set({ policy: name }, tokens);
    },
  });

  return {
    registry,
    timeToFirstToken: new Histogram({
      name: METRIC_NAMES.timeToFirstToken,
      help: 'Time from request arrival to its first generated token, in seconds.',
      labelNames: policy,
      buckets: TTFT_BUCKETS,
      registers,
    }),
    interTokenLatency: new Histogram({
      name: METRIC_NAMES.interTokenLatency,
      help: 'Time between consecutive generated tokens of one sequence, in seconds.',
      labelNames: policy,
      buckets: INTER_TOKEN_BUCKETS,
      registers,
    }),
    e2eRequestLatency: new Histogram({
      name: METRIC_NAMES.e2eRequestLatency,
      help: 'Time from request arrival to its last token, in seconds.',
      labelNames: policy,
      buckets: REQUEST_LATENCY_BUCKETS,
      registers,
    }),
    requestQueueTime: new Histogram({
      name: METRIC_NAMES.requestQueueTime,
      help: 'Time a request waited in the queue before admission, in seconds.',
      labelNames: policy,
      buckets: REQUEST_LATENCY_BUCKETS,
      registers,
    }),
    promptTokens: new Counter({ name: METRIC_NAMES.promptTokens, help: 'Prompt tokens processed.', labelNames: policy, registers }),
    generationTokens: new Counter({ name: METRIC_NAMES.generationTokens, help: 'Tokens generated.', labelNames: policy, registers }),
    requestSuccess: new Counter({
      name: METRIC_NAMES.requestSuccess,
      help: 'Finished sequences by finish reason (stop, length, abort).',
      labelNames: ['policy', 'finished_reason'] as const,
      registers,
    }),
    requestErrors: new Counter({
      name: METRIC_NAMES.requestErrors,
      help: 'Requests answered with an error, by error code.',
      labelNames: ['policy', 'code'] as const,
      registers,
    }),
    requestsRunning,
    requestsWaiting,
    kvCacheBytes,
    kvCacheCapacityBytes,
    kvGatheredBytes,
    kvCacheUsageRatio,
    kvTokensRetained: new Histogram({
      name: METRIC_NAMES.kvTokensRetained,
      help: 'KV cache entries per layer a sequence kept at its end (C axis).',
      labelNames: policy,
      buckets: KV_TOKENS_BUCKETS,
      registers,
    }),
    compressionRatio: new Histogram({
      name: METRIC_NAMES.compressionRatio,
      help: 'KV entries kept over tokens covered (compression: tokens kept over the original), per sequence (C axis).',
      labelNames: policy,
      buckets: COMPRESSION_RATIO_BUCKETS,
      registers,
    }),
    liveContexts,
    longestLiveContext,
    attentionMassRetained: new Histogram({
      name: METRIC_NAMES.attentionMassRetained,
      help: 'Attention mass kept by the last eviction, per sequence (A axis, online proxy).',
      labelNames: policy,
      buckets: FRACTION_BUCKETS,
      registers,
    }),
    shadowKlDivergence: new Histogram({
      name: METRIC_NAMES.shadowKlDivergence,
      help: 'Mean per-step KL(full || policy) in nats over a shadowed request (A axis).',
      labelNames: policy,
      buckets: KL_BUCKETS,
      registers,
    }),
    shadowTop1Agreement: new Histogram({
      name: METRIC_NAMES.shadowTop1Agreement,
      help: "Fraction of a shadowed request's steps whose most likely token matches the full-cache model (A axis).",
      labelNames: policy,
      buckets: FRACTION_BUCKETS,
      registers,
    }),
    shadowRequests: new Counter({
      name: METRIC_NAMES.shadowRequests,
      help: 'Requests sampled for shadow fidelity, by outcome (scored, dropped: queue full, failed, skipped: nothing to compare).',
      labelNames: ['policy', 'outcome'] as const,
      registers,
    }),
    promptTokensDropped: new Counter({
      name: METRIC_NAMES.promptTokensDropped,
      help: 'Prompt tokens dropped before prefill, by reason: compression (context compression), truncate or shift (overflow modes) (C axis).',
      labelNames: ['policy', 'reason'] as const,
      registers,
    }),
    compressionSeconds: new Histogram({
      name: METRIC_NAMES.compressionSeconds,
      help: 'Time spent compressing one prompt before prefill, in seconds (the P cost of C).',
      labelNames: policy,
      buckets: COMPRESSION_SECONDS_BUCKETS,
      registers,
    }),
    overflowRequests: new Counter({
      name: METRIC_NAMES.overflowRequests,
      help: 'Requests whose prompt + max_tokens exceeded the window and were served by an overflow mode (truncate, shift, compress, evict), labelled by the serving policy.',
      labelNames: ['policy', 'mode'] as const,
      registers,
    }),
    expertCacheHits: runnerCounter(METRIC_NAMES.expertCacheHits, 'MoE experts found in the expert cache when routed to (P axis).', 'expertCacheHits'),
    expertPrefetchHits: runnerCounter(
      METRIC_NAMES.expertPrefetchHits,
      'MoE experts routed to that a prefetch had loaded or was loading (P axis).',
      'expertPrefetchHits',
    ),
    expertCacheMisses: runnerCounter(METRIC_NAMES.expertCacheMisses, 'MoE experts read from disk on demand when routed to (P axis).', 'expertCacheMisses'),
    expertBytesLoaded: runnerCounter(
      METRIC_NAMES.expertBytesLoaded,
      'Bytes of MoE expert weights read from disk, demand and prefetch (P axis).',
      'expertBytesLoaded',
    ),
    expertLoadStall: runnerCounter(METRIC_NAMES.expertLoadStall, 'Seconds inference waited for MoE expert reads (P axis).', 'expertLoadStallMs', 1 / 1000),
    expertPrefetchAccuracy: runnerGauge(
      METRIC_NAMES.expertPrefetchAccuracy,
      "Fraction of routed MoE experts the previous layer's prediction had named, since the model loaded (0 to 1).",
      'expertPredictionAccuracy',
    ),
    expertResidentBytes: runnerGauge(
      METRIC_NAMES.expertResidentBytes,
      'Bytes of MoE expert weights held in the expert cache now (C axis).',
      'expertResidentBytes',
    ),
    expertCacheBudgetBytes: runnerGauge(METRIC_NAMES.expertCacheBudgetBytes, 'The expert cache budget in bytes.', 'expertBudgetBytes'),
    residentWeightBytes: runnerGauge(
      METRIC_NAMES.residentWeightBytes,
      'Bytes of weights kept resident outside any offload budget (MoE: non-expert weights; STI: embeddings, norms, biases).',
      'residentWeightBytes',
    ),
    stiResidentBytes: runnerGauge(
      METRIC_NAMES.stiResidentBytes,
      'Bytes of STI shards held in memory now (resident set and preload buffer, C axis).',
      'stiResidentBytes',
    ),
    stiBytesRead: runnerCounter(METRIC_NAMES.stiBytesRead, 'Bytes of STI shards read from disk while serving (P axis).', 'stiBytesLoaded'),
    stiBytesReadPerPass: runnerGauge(
      METRIC_NAMES.stiBytesReadPerPass,
      'STI shard bytes read per forward pass (per decode step), since the model loaded.',
      'stiBytesReadPerPass',
    ),
    stiIoStall: runnerCounter(METRIC_NAMES.stiIoStall, 'Seconds inference waited for STI shard reads (P axis).', 'stiIoStallMs', 1 / 1000),
    stiShards: new Gauge({
      name: METRIC_NAMES.stiShards,
      help: "STI shards at each bitwidth in the engine's plan (the bitwidth histogram).",
      labelNames: ['policy', 'bits'] as const,
      registers,
      collect(this: Gauge<'policy' | 'bits'>) {
        for (const b of [32, 8, 4, 2]) {
          const v = runnerValue(`stiShardsAt${b}Bits`);
          if (v !== undefined) this.set({ ...expertLabels, bits: String(b) }, v);
        }
      },
    }),
    workerRestarts,
    prefixCacheQueries,
    prefixCacheHitTokens,
    prefixCacheBytes: engineGauge(
      METRIC_NAMES.prefixCacheBytes,
      'Bytes of KV the prefix cache holds, inside the KV budget (C axis).',
      (s) => s.prefixCacheBytes ?? 0,
    ),
  };
}
