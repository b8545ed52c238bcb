/**
 * Runs a dense model with elastic weights (STI) behind the ModelRunner contract
 * (the dense DecoderSession's inputs and outputs), layer by layer:
 *
 *   acquire layer l's shards from the shared shard store (shard-store.ts):
 *     resident and preload-buffer shards are cached, the rest are read now or
 *     were already being read (streamed: used once, never admitted);
 *   start reading layer l+1's streamed shards (they arrive while layer l computes:
 *     the IO/compute pipeline);
 *   assemble layer l's four matrices from its shards (fp32 copied, 8/4/2-bit codes
 *     dequantized into the one compute buffer) and run layer l's graph;
 *   finally the head graph.
 *
 * The plan (which width each shard has, which are resident, which sit in the
 * preload buffer) comes from the planner (policies/weight-elastic/planner.ts)
 * through configure(). Every plan computes with the same graphs and the same
 * fp32 inputs when every shard is at 32 bits, so such plans give bit-identical
 * logits whatever is resident.
 *
 * The store's cache budget is resident + preload bytes; streamed shards never
 * enter it, so what is resident is exactly the plan's choice.
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { readStiManifest, type StiManifest } from '../model/compile/sti-compile.js';
import { STI_IO } from '../model/compile/sti-graphs.js';
import type { ExpertBits } from '../model/compile/moe-quantize.js';
import { allocLayer, assembleInto, type LayerMatrices } from '../model/compile/sti-shards.js';
import type { ModelSpec } from '../model/spec.js';
import type { DecoderStepInputs, DecoderStepOutputs } from './decoder-session.js';
import type { ModelRunner } from './model-runner.js';
import { ShardStore, type ShardCodec } from './shard-store.js';

export type StiRunnerErrorCode = 'shard_file_missing' | 'shard_file_corrupt';

export class StiRunnerError extends Error {
  override readonly name = 'StiRunnerError';
  constructor(
    readonly code: StiRunnerErrorCode,
    readonly file: string | null,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(file === null ? message : `${file}: ${message}`, options);
  }
}

/** What the runner executes: per shard id, its width, whether it is resident, whether it sits in the preload buffer. */
export interface ShardPlacement {
  readonly bits: readonly ExpertBits[];
  readonly resident: readonly boolean[];
  readonly preload: readonly boolean[];
}

export type StiVariant = 'plain' | 'stats' | 'quest';

/** One layer's outputs. */
export interface LayerResult {
  readonly hidden: Float32Array;
  readonly presentKey: Float32Array;
  readonly presentValue: Float32Array;
  readonly attnSum: Float32Array | null;
  readonly attnRows: Float32Array | null;
}

const SESSION_OPTIONS = (threads: number): ort.InferenceSession.SessionOptions => ({
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  enableCpuMemArena: true,
  enableMemPattern: false,
  // As in moe-runner.ts: spinning pool threads starve libuv's threadpool, which does the shard reads.
  extra: { 'session.intra_op.allow_spinning': '0' },
});

export class StiRunner implements ModelRunner {
  readonly store: ShardStore<Uint8Array>;
  private readonly byLayer: number[][];
  private placement: ShardPlacement;
  private readonly variantLayers = new Map<Exclude<StiVariant, 'plain'>, ort.InferenceSession[]>();
  private readonly buffer: LayerMatrices;
  private passes = 0;
  private tokens = 0;
  private computeMs = 0;
  private assembleMs = 0;
  private prefetchEnabled = true;
  private readonly extra = new Map<string, number>();

  private constructor(
    private readonly spec: ModelSpec,
    readonly manifest: StiManifest,
    private readonly layers: ort.InferenceSession[],
    private readonly headSession: ort.InferenceSession,
    readonly dir: string,
    private readonly threads: number,
  ) {
    const codec: ShardCodec<Uint8Array> = {
      file: (key, bits) => {
        const f = manifest.shards[key]?.files[String(bits)];
        if (f === undefined)
          throw new StiRunnerError('shard_file_missing', null, `the STI manifest lists no ${bits}-bit file for shard ${key}; recompile the model`);
        return f;
      },
      // Kept as file bytes (the budget's unit); decoded into the compute buffer at use.
      materialize: (_key, _bits, bytes) => Promise.resolve(bytes),
      release: () => {},
      describe: (key, bits) => {
        const s = manifest.shards[key];
        return s === undefined ? `shard ${key}` : `layer ${s.layer} ${s.kind} shard ${s.index} (${bits}-bit)`;
      },
      fail: (kind, path, message, cause) => new StiRunnerError(kind === 'missing' ? 'shard_file_missing' : 'shard_file_corrupt', path, message, { cause }),
    };
    this.store = new ShardStore(dir, codec, { budgetBytes: 0, cachePolicy: 'lru' });
    this.byLayer = Array.from({ length: spec.numLayers }, () => []);
    for (const s of manifest.shards) this.byLayer[s.layer]?.push(s.id);
    const n = manifest.shards.length;
    this.placement = { bits: new Array<ExpertBits>(n).fill(32), resident: new Array<boolean>(n).fill(false), preload: new Array<boolean>(n).fill(false) };
    this.buffer = allocLayer(spec);
  }

  /** Opens a compiled STI entry (sti-compile.ts): every shard fp32 and streamed until configure(). */
  static async open(dir: string, spec: ModelSpec, options: { readonly threads: number }): Promise<StiRunner> {
    const manifest = readStiManifest(dir);
    if (manifest.numLayers !== spec.numLayers)
      throw new Error(`${join(dir, 'sti-manifest.json')}: compiled for ${manifest.numLayers} layers, the model has ${spec.numLayers}; recompile`);
    const opts = SESSION_OPTIONS(options.threads);
    const layers: ort.InferenceSession[] = [];
    for (const g of manifest.layerGraphs) layers.push(await ort.InferenceSession.create(join(dir, g), opts));
    const head = await ort.InferenceSession.create(join(dir, manifest.headGraph), opts);
    return new StiRunner(spec, manifest, layers, head, dir, options.threads);
  }

  /** Shard ids of a layer, in manifest order. */
  shardsOf(layer: number): readonly number[] {
    return this.byLayer[layer] ?? [];
  }

  fileBytes(id: number, bits: ExpertBits): number {
    return this.store.fileBytes(id, bits);
  }

  /**
   * Applies a plan: widths, then loads the resident and preload-buffer shards
   * (preload buffer first, in layer order, so the first layers are ready soonest).
   */
  async configure(p: ShardPlacement, options: { readonly prefetch?: boolean } = {}): Promise<void> {
    const ids = this.manifest.shards.map((s) => s.id);
    const held = ids.filter((id) => p.resident[id] === true || p.preload[id] === true);
    const bytes = held.reduce((a, id) => a + this.store.fileBytes(id, p.bits[id] ?? 32), 0);
    this.placement = p;
    this.prefetchEnabled = options.prefetch ?? true;
    this.store.reconfigure((id) => p.bits[id] ?? 32, { budgetBytes: bytes });
    const order = [...held.filter((id) => p.preload[id] === true), ...held.filter((id) => p.preload[id] !== true)];
    await this.store.preload(order);
  }

  get plan(): ShardPlacement {
    return this.placement;
  }

  setStat(name: string, value: number): void {
    this.extra.set(name, value);
  }

  resetStats(): void {
    this.store.resetStats();
    this.passes = 0;
    this.tokens = 0;
    this.computeMs = 0;
    this.assembleMs = 0;
  }

  private streamed(layer: number): number[] {
    return this.shardsOf(layer).filter((id) => this.placement.resident[id] !== true && this.placement.preload[id] !== true);
  }

  run(inputs: DecoderStepInputs): Promise<DecoderStepOutputs> {
    return this.forward(inputs, 'plain');
  }

  /** This runner with the stats or quest layer graphs, sharing its store and plan. */
  async variant(variant: Exclude<StiVariant, 'plain'>): Promise<ModelRunner> {
    await this.sessionsFor(variant);
    return { run: (inputs) => this.forward(inputs, variant), stats: () => this.stats(), release: () => Promise.resolve() };
  }

  private async sessionsFor(variant: StiVariant): Promise<ort.InferenceSession[]> {
    if (variant === 'plain') return this.layers;
    let sessions = this.variantLayers.get(variant);
    if (sessions === undefined) {
      const names = variant === 'stats' ? this.manifest.statsLayerGraphs : this.manifest.questLayerGraphs;
      sessions = [];
      for (const g of names) sessions.push(await ort.InferenceSession.create(join(this.dir, g), SESSION_OPTIONS(this.threads)));
      this.variantLayers.set(variant, sessions);
    }
    return sessions;
  }

  /** Assembles layer l's matrices from the given shard bytes into `m`. */
  assemble(layer: number, bytesOf: (id: number) => { bits: ExpertBits; bytes: Uint8Array }, m: LayerMatrices = this.buffer): LayerMatrices {
    const t0 = performance.now();
    for (const id of this.shardsOf(layer)) {
      const s = this.manifest.shards[id];
      if (s === undefined) throw new Error('unreachable');
      const { bits, bytes } = bytesOf(id);
      assembleInto(this.spec, s, bits, bytes, m);
    }
    this.assembleMs += performance.now() - t0;
    return m;
  }

  async forward(inputs: DecoderStepInputs, variant: StiVariant): Promise<DecoderStepOutputs> {
    const sessions = await this.sessionsFor(variant);
    const L = this.spec.numLayers;
    this.passes += 1;
    this.tokens += inputs.batch * inputs.newTokens;
    if (this.prefetchEnabled) this.store.stream(this.streamed(0));
    const presentKeys: Float32Array[] = [];
    const presentValues: Float32Array[] = [];
    const attnSum: Float32Array[] | null = variant === 'stats' ? [] : null;
    const attnRows: Float32Array[] | null = variant === 'stats' ? [] : null;
    let hidden: Float32Array | null = null;
    for (let l = 0; l < L; l++) {
      const acquired = await this.store.acquire(this.shardsOf(l), false);
      try {
        if (this.prefetchEnabled && l + 1 < L) this.store.stream(this.streamed(l + 1));
        const m = this.assemble(l, (id) => {
          const bytes = acquired.values.get(id);
          if (bytes === undefined) throw new Error(`internal: shard ${id} not acquired`);
          return { bits: this.placement.bits[id] ?? 32, bytes };
        });
        const r = await this.layer(sessions, l, inputs, hidden, m);
        hidden = r.hidden;
        presentKeys.push(r.presentKey);
        presentValues.push(r.presentValue);
        if (r.attnSum !== null) attnSum?.push(r.attnSum);
        if (r.attnRows !== null) attnRows?.push(r.attnRows);
      } finally {
        acquired.release();
      }
    }
    if (hidden === null) throw new Error('unreachable: model without layers');
    const logits = await this.head(hidden, inputs);
    return { logits, presentKeys, presentValues, attnSum, attnRows };
  }

  /** Runs layer l on `hidden` (null at layer 0: the input ids) with the given matrices. */
  async layer(
    sessions: readonly ort.InferenceSession[] | null,
    l: number,
    inputs: DecoderStepInputs,
    hidden: Float32Array | null,
    m: LayerMatrices,
  ): Promise<LayerResult> {
    const { batch: B, newTokens: T } = inputs;
    const { numKvHeads: KV, headDim: D, hiddenSize: h, intermediateSize: I } = this.spec;
    const N = B * T;
    const past = inputs.layers[l];
    if (!past) throw new Error(`STI runner inputs: layer ${l} missing (${inputs.layers.length} given)`);
    const C = past.capacity;
    const check = (name: string, got: number, want: number): void => {
      if (got !== want) throw new Error(`STI runner input ${name} holds ${got} values, expected ${want} (B=${B}, T=${T})`);
    };
    check('input_ids', inputs.inputIds.length, N);
    check(`past_key_${l}`, past.keys.length, B * KV * C * D);
    check(`past_bias_${l}`, past.bias.length, B * past.biasHeads * past.biasRows * C);
    const feeds: Record<string, ort.Tensor> = {
      [STI_IO.positionIds]: new ort.Tensor('int64', inputs.positionIds, [B, T]),
      [STI_IO.newBias]: new ort.Tensor('float32', inputs.newBias, [B, 1, T, T]),
      [STI_IO.pastKey]: new ort.Tensor('float32', past.keys, [B, KV, C, D]),
      [STI_IO.pastValue]: new ort.Tensor('float32', past.values, [B, KV, C, D]),
      [STI_IO.pastBias]: new ort.Tensor('float32', past.bias, [B, past.biasHeads, past.biasRows, C]),
      [STI_IO.wQkv]: new ort.Tensor('float32', m.qkv, [(this.spec.numHeads + 2 * KV) * D, h]),
      [STI_IO.wO]: new ort.Tensor('float32', m.o, [h, this.spec.numHeads * D]),
      [STI_IO.wGateUp]: new ort.Tensor('float32', m.gateUp, [2 * I, h]),
      [STI_IO.wDown]: new ort.Tensor('float32', m.down, [h, I]),
    };
    if (l === 0) feeds[STI_IO.inputIds] = new ort.Tensor('int64', inputs.inputIds, [B, T]);
    else if (hidden !== null) feeds[STI_IO.hidden] = new ort.Tensor('float32', hidden, [N, h]);
    const set = sessions ?? this.layers;
    const session = set[l];
    if (!session) throw new Error('unreachable');
    if (set === this.variantLayers.get('stats'))
      feeds[STI_IO.attnWindow] = new ort.Tensor('int64', BigInt64Array.of(BigInt(Math.max(1, inputs.attnWindow ?? 1))), [1]);
    if (set === this.variantLayers.get('quest')) {
      const quest = inputs.quest;
      const ql = quest?.layers[l];
      if (quest === undefined || ql === undefined) throw new Error(`the quest layer graphs select pages: inputs.quest layer ${l} is required`);
      feeds[STI_IO.pageSize] = new ort.Tensor('int64', BigInt64Array.of(BigInt(quest.pageSize)), [1]);
      feeds[STI_IO.pageMin] = new ort.Tensor('float32', ql.min, [B, KV, ql.pages, D]);
      feeds[STI_IO.pageMax] = new ort.Tensor('float32', ql.max, [B, KV, ql.pages, D]);
      feeds[STI_IO.pageBias] = new ort.Tensor('float32', ql.bias, [B, KV, ql.pages]);
      feeds[STI_IO.questK] = new ort.Tensor('int64', BigInt64Array.of(BigInt(ql.k)), [1]);
    }
    const t0 = performance.now();
    const out = await session.run(feeds);
    this.computeMs += performance.now() - t0;
    const f32 = (name: string): Float32Array => {
      const t = out[name];
      if (!t || !(t.data instanceof Float32Array)) throw new Error(`STI layer ${l} output ${name} missing or not float32`);
      return t.data;
    };
    const stats = set === this.variantLayers.get('stats');
    return {
      hidden: f32(STI_IO.hiddenOut),
      presentKey: f32(STI_IO.presentKey),
      presentValue: f32(STI_IO.presentValue),
      attnSum: stats ? f32(STI_IO.attnSum) : null,
      attnRows: stats ? f32(STI_IO.attnRows) : null,
    };
  }

  async head(hidden: Float32Array, inputs: DecoderStepInputs): Promise<Float32Array> {
    const { batch: B, newTokens: T, logitCount: K } = inputs;
    const t0 = performance.now();
    const out = await this.headSession.run({
      [STI_IO.hidden]: new ort.Tensor('float32', hidden, [B * T, this.spec.hiddenSize]),
      [STI_IO.logitIndex]: new ort.Tensor('int64', inputs.logitIndex, [B, K]),
    });
    this.computeMs += performance.now() - t0;
    const logits = out[STI_IO.logits];
    if (!logits || !(logits.data instanceof Float32Array)) throw new Error('STI head output logits missing or not float32');
    return logits.data;
  }

  stats(): Readonly<Record<string, number>> {
    const s = this.store.stats;
    const out: Record<string, number> = {
      stiResidentBytes: this.store.residentBytes,
      stiBytesLoaded: s.bytesLoaded,
      stiBytesReadPerPass: this.passes === 0 ? 0 : s.bytesLoaded / this.passes,
      stiIoStallMs: s.loadStallMs,
      stiComputeMs: this.computeMs,
      stiAssembleMs: this.assembleMs,
      stiPasses: this.passes,
      stiTokens: this.tokens,
      stiShardHits: s.hits,
      stiShardReads: s.misses + s.prefetchHits,
      stiPrefetchHits: s.prefetchHits,
      residentWeightBytes: this.manifest.residentWeightBytes,
    };
    for (const [k, v] of this.extra) out[k] = v;
    return out;
  }

  async release(): Promise<void> {
    await this.store.close();
    for (const s of this.layers) await s.release();
    for (const sessions of this.variantLayers.values()) for (const s of sessions) await s.release();
    await this.headSession.release();
  }
}
