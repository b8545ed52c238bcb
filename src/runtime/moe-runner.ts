/**
 * Runs an MoE model behind the same ModelRunner contract as the dense
 * DecoderSession (ids, positions, new-token bias, logit index, per-layer
 * head-major past K/V with their masks in; logits and new K/V out), layer by layer:
 *
 *   layer graph l (resident weights) -> route (top-k per token, grouped by expert)
 *   -> acquire layer l's experts (cache hit, or read their files)
 *   -> prefetch the experts layer l+1's router predicts from layer l's hidden state
 *   -> run each expert once on all rows routed to it, add w * y into the residual
 *   -> next layer; finally the head graph.
 *
 * Prefetch reads run on libuv's threadpool while this thread is inside
 * session.run for the rest of layer l and layer l+1's attention, which is the
 * EdgeMoE compute/IO pipeline. The runner lives in the inference worker, so even
 * a stall waiting for a read never blocks the HTTP thread.
 *
 * Experts are always combined in ascending expert order, whatever is cached, so
 * with fp32 experts every budget computes bit-identical logits.
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { readMoeManifest, type MoeManifest } from '../model/compile/moe-compile.js';
import { MOE_IO } from '../model/compile/moe-graphs.js';
import type { ExpertBits } from '../model/compile/moe-quantize.js';
import { routeRows, topKExperts, type ExpertGroup } from '../model/moe-routing.js';
import type { ModelSpec, MoeSpec } from '../model/spec.js';
import type { CachePolicy } from '../kv/expert-cache.js';
import type { DecoderStepInputs, DecoderStepOutputs } from './decoder-session.js';
import { ExpertStore } from './moe-expert-store.js';
import type { ModelRunner } from './model-runner.js';

export interface MoeRunnerOptions {
  readonly threads: number;
  readonly budgetBytes: number;
  readonly cachePolicy: CachePolicy;
  readonly prefetch: boolean;
  /** Fill the cache with experts (in layer order) before serving: the all-resident configuration when the budget holds them all. */
  readonly preload?: boolean;
}

/** Called once per layer with the experts' input rows and the routing (profiling). */
export type LayerObserver = (layer: number, moeIn: Float32Array, rows: number, groups: readonly ExpertGroup[], store: ExpertStore) => Promise<void>;

const SESSION_OPTIONS = (threads: number): ort.InferenceSession.SessionOptions => ({
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  enableCpuMemArena: true,
  enableMemPattern: false,
  // onnxruntime's pool threads spin after each op by default; between our many small
  // per-layer and per-expert calls that spinning starves libuv's threadpool, which
  // does the expert reads (measured: 2x slower loads on 2 cores).
  extra: { 'session.intra_op.allow_spinning': '0' },
});

/** Which layer graphs a pass runs: plain, with attention statistics out, or with Quest page selection. */
export type MoeVariant = 'plain' | 'stats' | 'quest';

export class MoeRunner implements ModelRunner {
  private predicted: Array<Set<number> | null>;
  /** The stats and quest layer sessions, opened on first use. */
  private readonly variantLayers = new Map<Exclude<MoeVariant, 'plain'>, ort.InferenceSession[]>();
  private predictionHits = 0;
  private predictionTotal = 0;
  private steps = 0;
  /** Extra counters a caller (bitwidth adaptation) wants reported. */
  private readonly extra = new Map<string, number>();

  private constructor(
    private readonly spec: ModelSpec,
    private readonly moe: MoeSpec,
    readonly manifest: MoeManifest,
    private readonly layers: ort.InferenceSession[],
    private readonly head: ort.InferenceSession,
    readonly store: ExpertStore,
    private prefetchEnabled: boolean,
    private readonly dir: string,
    private readonly threads: number,
  ) {
    this.predicted = Array.from({ length: spec.numLayers }, () => null);
  }

  /** Opens a compiled MoE directory (see model/compile/moe-compile.ts). All experts start at fp32. */
  static async open(dir: string, spec: ModelSpec, options: MoeRunnerOptions): Promise<MoeRunner> {
    const moe = spec.moe;
    if (moe === undefined) throw new Error('MoeRunner: the model has no MoE layers; use DecoderSession');
    const manifest = readMoeManifest(dir);
    if (manifest.numLayers !== spec.numLayers || manifest.numExperts !== moe.numExperts) {
      throw new Error(
        `${join(dir, 'moe-manifest.json')}: compiled for ${manifest.numLayers} layers x ${manifest.numExperts} experts, the model has ${spec.numLayers} x ${moe.numExperts}; recompile`,
      );
    }
    const opts = SESSION_OPTIONS(options.threads);
    const layers: ort.InferenceSession[] = [];
    for (const g of manifest.layerGraphs) layers.push(await ort.InferenceSession.create(join(dir, g), opts));
    const head = await ort.InferenceSession.create(join(dir, manifest.headGraph), opts);
    const store = await ExpertStore.open(dir, manifest, { budgetBytes: options.budgetBytes, cachePolicy: options.cachePolicy, threads: options.threads });
    const runner = new MoeRunner(spec, moe, manifest, layers, head, store, options.prefetch, dir, options.threads);
    if (options.preload === true) await store.preload();
    return runner;
  }

  /** Sets every expert's width and the cache configuration; drops the cache. */
  configure(
    assignment: (layer: number, expert: number) => ExpertBits,
    options: { budgetBytes?: number; cachePolicy?: CachePolicy; prefetch?: boolean } = {},
  ): void {
    const { prefetch, ...rest } = options;
    this.store.reconfigure(assignment, rest);
    if (prefetch !== undefined) this.prefetchEnabled = prefetch;
  }

  setStat(name: string, value: number): void {
    this.extra.set(name, value);
  }

  resetStats(): void {
    this.store.resetStats();
    this.predictionHits = 0;
    this.predictionTotal = 0;
    this.steps = 0;
  }

  run(inputs: DecoderStepInputs): Promise<DecoderStepOutputs> {
    return this.forward(inputs, null);
  }

  /**
   * This runner with the stats or quest layer graphs (what attention policies need),
   * sharing its expert store and configuration; releasing the view releases nothing,
   * the sessions go with the runner.
   */
  async variant(variant: Exclude<MoeVariant, 'plain'>): Promise<ModelRunner> {
    if (!this.variantLayers.has(variant)) {
      const names = variant === 'stats' ? this.manifest.statsLayerGraphs : this.manifest.questLayerGraphs;
      const sessions: ort.InferenceSession[] = [];
      for (const g of names) sessions.push(await ort.InferenceSession.create(join(this.dir, g), SESSION_OPTIONS(this.threads)));
      this.variantLayers.set(variant, sessions);
    }
    return {
      run: (inputs) => this.forward(inputs, null, variant),
      stats: () => this.stats(),
      release: () => Promise.resolve(),
    };
  }

  async forward(inputs: DecoderStepInputs, observer: LayerObserver | null, variant: MoeVariant = 'plain'): Promise<DecoderStepOutputs> {
    const { batch: B, newTokens: T, logitCount: K } = inputs;
    const { numKvHeads: KV, headDim: D, hiddenSize: h } = this.spec;
    const { numExperts: E, topK } = this.moe;
    const N = B * T;
    const check = (name: string, got: number, want: number): void => {
      if (got !== want) throw new Error(`MoE runner input ${name} holds ${got} values, expected ${want} (B=${B}, T=${T}, K=${K})`);
    };
    check('input_ids', inputs.inputIds.length, N);
    check('position_ids', inputs.positionIds.length, N);
    check('new_bias', inputs.newBias.length, N * T);
    check('logit_index', inputs.logitIndex.length, B * K);
    if (inputs.layers.length !== this.spec.numLayers)
      throw new Error(`MoE runner inputs: ${inputs.layers.length} layers given, model has ${this.spec.numLayers}`);
    const positionIds = new ort.Tensor('int64', inputs.positionIds, [B, T]);
    const newBias = new ort.Tensor('float32', inputs.newBias, [B, 1, T, T]);
    const presentKeys: Float32Array[] = [];
    const presentValues: Float32Array[] = [];
    let hidden: Float32Array | null = null;
    this.steps += 1;
    const sessions = variant === 'plain' ? this.layers : this.variantLayers.get(variant);
    if (sessions === undefined) throw new Error(`MoE runner: the ${variant} layer graphs are not open (call variant() first)`);
    const attnSum: Float32Array[] | null = variant === 'stats' ? [] : null;
    const attnRows: Float32Array[] | null = variant === 'stats' ? [] : null;
    const attnWindow = variant === 'stats' ? new ort.Tensor('int64', BigInt64Array.of(BigInt(Math.max(1, inputs.attnWindow ?? 1))), [1]) : null;
    const quest = inputs.quest;
    if (variant === 'quest' && quest === undefined) throw new Error('the quest layer graphs select pages: inputs.quest is required');

    for (let l = 0; l < this.spec.numLayers; l++) {
      const past = inputs.layers[l];
      if (!past) throw new Error('unreachable');
      const C = past.capacity;
      check(`past_key_${l}`, past.keys.length, B * KV * C * D);
      check(`past_value_${l}`, past.values.length, B * KV * C * D);
      check(`past_bias_${l}`, past.bias.length, B * past.biasHeads * past.biasRows * C);
      const feeds: Record<string, ort.Tensor> = {
        [MOE_IO.positionIds]: positionIds,
        [MOE_IO.newBias]: newBias,
        [MOE_IO.pastKey]: new ort.Tensor('float32', past.keys, [B, KV, C, D]),
        [MOE_IO.pastValue]: new ort.Tensor('float32', past.values, [B, KV, C, D]),
        [MOE_IO.pastBias]: new ort.Tensor('float32', past.bias, [B, past.biasHeads, past.biasRows, C]),
      };
      if (l === 0) feeds[MOE_IO.inputIds] = new ort.Tensor('int64', inputs.inputIds, [B, T]);
      else if (hidden !== null) feeds[MOE_IO.hidden] = new ort.Tensor('float32', hidden, [N, h]);
      if (attnWindow !== null) feeds[MOE_IO.attnWindow] = attnWindow;
      if (variant === 'quest' && quest !== undefined) {
        const ql = quest.layers[l];
        if (!ql) throw new Error(`quest inputs: layer ${l} missing`);
        check(`page_min_${l}`, ql.min.length, B * KV * ql.pages * D);
        check(`page_bias_${l}`, ql.bias.length, B * KV * ql.pages);
        feeds[MOE_IO.pageSize] = new ort.Tensor('int64', BigInt64Array.of(BigInt(quest.pageSize)), [1]);
        feeds[MOE_IO.pageMin] = new ort.Tensor('float32', ql.min, [B, KV, ql.pages, D]);
        feeds[MOE_IO.pageMax] = new ort.Tensor('float32', ql.max, [B, KV, ql.pages, D]);
        feeds[MOE_IO.pageBias] = new ort.Tensor('float32', ql.bias, [B, KV, ql.pages]);
        feeds[MOE_IO.questK] = new ort.Tensor('int64', BigInt64Array.of(BigInt(ql.k)), [1]);
      }
      const session = sessions[l];
      if (!session) throw new Error('unreachable');
      const out = await session.run(feeds);
      const f32 = (name: string): Float32Array => {
        const t = out[name];
        if (!t || !(t.data instanceof Float32Array)) throw new Error(`MoE layer ${l} output ${name} missing or not float32`);
        return t.data;
      };
      presentKeys.push(f32(MOE_IO.presentKey));
      presentValues.push(f32(MOE_IO.presentValue));
      attnSum?.push(f32(MOE_IO.attnSum));
      attnRows?.push(f32(MOE_IO.attnRows));
      const resid = f32(MOE_IO.resid);
      const moeIn = f32(MOE_IO.moeIn);
      const groups = routeRows(f32(MOE_IO.routerLogits), N, E, topK, this.moe.normTopKProb);
      const experts = groups.map((g) => g.expert);

      const predicted = this.predicted[l];
      if (predicted) {
        for (const e of experts) if (predicted.has(e)) this.predictionHits += 1;
        this.predictionTotal += experts.length;
        this.predicted[l] = null;
      }
      if (observer) await observer(l, moeIn, N, groups, this.store);

      // Pins what is cached synchronously, before the prefetch below can evict it.
      const acquiring = this.store.acquire(l, experts);
      if (l + 1 < this.spec.numLayers) {
        const next = new Set(topKExperts(f32(MOE_IO.nextRouterLogits), N, E, topK));
        this.predicted[l + 1] = next;
        if (this.prefetchEnabled) this.store.prefetch(l + 1, next);
      }
      const acquired = await acquiring;
      try {
        for (const g of groups) {
          const handle = acquired.handles.get(g.expert);
          if (!handle) throw new Error(`internal: expert ${l}:${g.expert} not acquired`);
          const M = g.rows.length;
          const x = new Float32Array(M * h);
          g.rows.forEach((r, m) => x.set(moeIn.subarray(r * h, (r + 1) * h), m * h));
          const y = await this.store.run(handle, x, M);
          g.rows.forEach((r, m) => {
            const w = g.weights[m]!;
            const base = r * h;
            const yb = m * h;
            for (let i = 0; i < h; i++) resid[base + i] = resid[base + i]! + w * y[yb + i]!;
          });
        }
      } finally {
        acquired.release();
      }
      hidden = resid;
    }
    if (hidden === null) throw new Error('unreachable: model without layers');
    const out = await this.head.run({
      [MOE_IO.hidden]: new ort.Tensor('float32', hidden, [N, h]),
      [MOE_IO.logitIndex]: new ort.Tensor('int64', inputs.logitIndex, [B, K]),
    });
    const logits = out[MOE_IO.logits];
    if (!logits || !(logits.data instanceof Float32Array)) throw new Error('MoE head output logits missing or not float32');
    return { logits: logits.data, presentKeys, presentValues, attnSum, attnRows };
  }

  stats(): Readonly<Record<string, number>> {
    const s = this.store.stats;
    const lookups = s.hits + s.misses + s.prefetchHits;
    const out: Record<string, number> = {
      expertCacheHits: s.hits,
      expertCacheMisses: s.misses,
      expertPrefetchHits: s.prefetchHits,
      expertHitRate: lookups === 0 ? 0 : (s.hits + s.prefetchHits) / lookups,
      expertBytesLoaded: s.bytesLoaded,
      expertLoadStallMs: s.loadStallMs,
      expertMaterializeMs: s.materializeMs,
      expertPrefetchIssued: s.prefetchIssued,
      expertPrefetchWasted: s.prefetchWasted,
      expertPredictionAccuracy: this.predictionTotal === 0 ? 0 : this.predictionHits / this.predictionTotal,
      expertResidentBytes: this.store.residentBytes,
      expertResidentBytesPeak: s.residentPeak,
      expertTransientBytesPeak: s.transientPeak,
      expertBudgetBytes: this.store.budgetBytes,
      expertCalls: s.expertCalls,
      moeSteps: this.steps,
      residentWeightBytes: this.manifest.weightBytes,
    };
    for (const [k, v] of this.extra) out[k] = v;
    return out;
  }

  async release(): Promise<void> {
    await this.store.close();
    for (const s of this.layers) await s.release();
    for (const sessions of this.variantLayers.values()) for (const s of sessions) await s.release();
    await this.head.release();
  }
}
