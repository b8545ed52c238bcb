/**
 * The only module that imports onnxruntime-node. Wraps one compiled decoder
 * graph: builds tensors from the engine's typed arrays, checks them against the
 * session's declared inputs, and hands back plain typed arrays.
 *
 * A graph compiled with every variant (decoder-graph.ts, variants 'all') is one
 * onnxruntime session, so one copy of the weights; `variant(v)` returns a
 * runner over the same session that sets the `variant` input and fetches only
 * that variant's outputs. Views cost nothing to create, so no request waits for
 * a variant to load; only the runner `create` returned releases the session.
 */
import * as ort from 'onnxruntime-node';
import { GRAPH_IO, VARIANT_CODE } from '../model/compile/decoder-graph.js';
import type { ModelRunner } from './model-runner.js';

export type { DecoderStepInputs, DecoderStepOutputs, LayerPast, QuestInputs, QuestLayerInputs } from '../model/step-io.js';
import type { DecoderStepInputs, DecoderStepOutputs } from '../model/step-io.js';

export interface DecoderShape {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
}

/** The variants a runner can be; `plainDecode` is the plain runner's own choice per step. */
export type DecoderVariant = Exclude<keyof typeof VARIANT_CODE, 'plainDecode'>;

export interface SessionOptions {
  readonly threads: number;
  /** The variant the returned runner runs (default plain); others through variant(). */
  readonly variant?: DecoderVariant;
  /** Writes onnxruntime's per-node timing JSON as PREFIX_<date>.json on release (benchmarks). */
  readonly profilePrefix?: string;
  /** Decode steps of the plain runner take the lean decode core (default true; false: the general core, for comparisons). */
  readonly leanDecode?: boolean;
  /**
   * Whether onnxruntime's intra-op threads spin-wait for work between kernels (its default, true).
   * Spinning is fastest on an otherwise idle machine; while other threads need the cores (a
   * server's HTTP and tokenizer threads), a spinning pool both steals their time and stalls on
   * its own preempted threads. The engine passes engine.threadSpinning (default true).
   */
  readonly spinning?: boolean;
}

export class DecoderSession implements ModelRunner {
  readonly emitsAttention: boolean;
  readonly selectsPages: boolean;
  private readonly fetches: readonly string[];
  /** An all-variant graph's inputs this variant does not read: fixed placeholders, made once. */
  private readonly fixedFeeds: Readonly<Record<string, ort.Tensor>>;
  /** The plain runner of an all-variant graph: steps of one new token per row take the lean decode core (decode-core.ts). */
  private readonly decodeFeed: ort.Tensor | null;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly shape: DecoderShape,
    /** The variants this session's graph serves: all three, or the one it was built as. */
    readonly variants: readonly DecoderVariant[],
    readonly variantName: DecoderVariant,
    private readonly owner: boolean,
    private readonly profiling: boolean,
    private readonly leanDecode: boolean,
  ) {
    this.emitsAttention = variantName === 'stats';
    this.selectsPages = variantName === 'quest';
    const names: string[] = [GRAPH_IO.logits];
    for (let l = 0; l < shape.numLayers; l++) {
      names.push(GRAPH_IO.presentKey(l), GRAPH_IO.presentValue(l));
      if (this.emitsAttention) names.push(GRAPH_IO.attnSum(l), GRAPH_IO.attnRows(l));
    }
    this.fetches = names;
    this.fixedFeeds = variants.length > 1 ? placeholderFeeds(shape, variantName) : {};
    this.decodeFeed =
      leanDecode && variants.length > 1 && variantName === 'plain' ? new ort.Tensor('int64', BigInt64Array.of(BigInt(VARIANT_CODE.plainDecode)), [1]) : null;
  }

  static async create(path: string, shape: DecoderShape, options: SessionOptions): Promise<DecoderSession> {
    const profilePrefix = options.profilePrefix ?? process.env['CAPSERVE_ORT_PROFILE'];
    const session = await ort.InferenceSession.create(path, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      enableCpuMemArena: true,
      enableMemPattern: false,
      // As moe-runner.ts and sti-runner.ts do always: pool threads that sleep between kernels.
      ...(options.spinning === false ? { extra: { 'session.intra_op.allow_spinning': '0' } } : {}),
      // CAPSERVE_ORT_PROFILE=prefix writes onnxruntime's per-node timing JSON (for performance work).
      ...(profilePrefix !== undefined ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
    });
    const hasStats = session.outputNames.includes(GRAPH_IO.attnSum(0));
    const variants: DecoderVariant[] = session.inputNames.includes(GRAPH_IO.variant)
      ? ['plain', 'stats', 'quest']
      : hasStats
        ? ['stats']
        : session.inputNames.includes(GRAPH_IO.pageSize)
          ? ['quest']
          : ['plain'];
    const variant = options.variant ?? variants[0] ?? 'plain';
    if (!variants.includes(variant)) {
      await session.release();
      throw new Error(`${path} serves the ${variants.join(', ')} variant, not ${variant}`);
    }
    return new DecoderSession(session, shape, variants, variant, true, profilePrefix !== undefined, options.leanDecode ?? true);
  }

  /** A runner of another variant over the same session (and weights); released with this one. */
  variant(variant: DecoderVariant): DecoderSession {
    if (!this.variants.includes(variant)) throw new Error(`this decoder graph has no ${variant} variant (it serves ${this.variants.join(', ')})`);
    return new DecoderSession(this.session, this.shape, this.variants, variant, false, false, this.leanDecode);
  }

  async run(inputs: DecoderStepInputs): Promise<DecoderStepOutputs> {
    const { batch: B, newTokens: T, logitCount: K } = inputs;
    const { numLayers, numKvHeads: KV, headDim: D } = this.shape;
    const feeds: Record<string, ort.Tensor> = {};
    const put = (name: string, type: 'float32' | 'int64', data: Float32Array | BigInt64Array, dims: number[]): void => {
      const expected = dims.reduce((a, b) => a * b, 1);
      if (data.length !== expected) {
        throw new Error(`decoder input ${name}: ${type} [${dims.join(', ')}] needs ${expected} values, got ${data.length}`);
      }
      feeds[name] = type === 'int64' ? new ort.Tensor('int64', data as BigInt64Array, dims) : new ort.Tensor('float32', data as Float32Array, dims);
    };
    put(GRAPH_IO.inputIds, 'int64', inputs.inputIds, [B, T]);
    put(GRAPH_IO.positionIds, 'int64', inputs.positionIds, [B, T]);
    put(GRAPH_IO.newBias, 'float32', inputs.newBias, [B, 1, T, T]);
    put(GRAPH_IO.logitIndex, 'int64', inputs.logitIndex, [B, K]);
    if (inputs.layers.length !== numLayers) throw new Error(`decoder inputs: ${inputs.layers.length} layers given, model has ${numLayers}`);
    // A float16 KV cache (Uint16Array bit patterns) feeds a graph compiled with float16 past inputs.
    const putKv = (name: string, data: Float32Array | Uint16Array, dims: number[]): void => {
      if (data instanceof Float32Array) {
        put(name, 'float32', data, dims);
        return;
      }
      const expected = dims.reduce((a, b) => a * b, 1);
      if (data.length !== expected) throw new Error(`decoder input ${name}: float16 [${dims.join(', ')}] needs ${expected} values, got ${data.length}`);
      feeds[name] = new ort.Tensor('float16', data, dims);
    };
    inputs.layers.forEach((layer, l) => {
      putKv(GRAPH_IO.pastKey(l), layer.keys, [B, KV, layer.capacity, D]);
      putKv(GRAPH_IO.pastValue(l), layer.values, [B, KV, layer.capacity, D]);
      put(GRAPH_IO.pastBias(l), 'float32', layer.bias, [B, layer.biasHeads, layer.biasRows, layer.capacity]);
    });
    if (this.emitsAttention) put(GRAPH_IO.attnWindow, 'int64', BigInt64Array.of(BigInt(Math.max(1, inputs.attnWindow ?? 1))), [1]);
    if (this.selectsPages) {
      const q = inputs.quest;
      if (!q) throw new Error('this decoder selects Quest pages: inputs.quest is required');
      put(GRAPH_IO.pageSize, 'int64', BigInt64Array.of(BigInt(q.pageSize)), [1]);
      q.layers.forEach((ql, l) => {
        put(GRAPH_IO.pageMin(l), 'float32', ql.min, [B, KV, ql.pages, D]);
        put(GRAPH_IO.pageMax(l), 'float32', ql.max, [B, KV, ql.pages, D]);
        put(GRAPH_IO.pageBias(l), 'float32', ql.bias, [B, KV, ql.pages]);
        put(GRAPH_IO.questK(l), 'int64', BigInt64Array.of(BigInt(ql.k)), [1]);
      });
    }
    Object.assign(feeds, this.fixedFeeds);
    if (this.decodeFeed !== null && T === 1) feeds[GRAPH_IO.variant] = this.decodeFeed;
    const missing = this.session.inputNames.filter((n) => !(n in feeds));
    if (missing.length > 0) throw new Error(`decoder inputs missing: ${missing.join(', ')}`);
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await this.session.run(feeds, this.fetches);
    } catch (err) {
      const described = Object.entries(feeds)
        .slice(0, 8)
        .map(([n, t]) => `${n}: ${t.type} [${t.dims.join(', ')}]`)
        .join('; ');
      throw new Error(`onnxruntime run failed (${(err as Error).message}); inputs ${described} ...`, { cause: err });
    }
    const f32 = (name: string): Float32Array => {
      const t = out[name];
      if (!t || !(t.data instanceof Float32Array)) throw new Error(`decoder output ${name} missing or not float32`);
      return t.data;
    };
    const presentKeys: Float32Array[] = [];
    const presentValues: Float32Array[] = [];
    const attnSum: Float32Array[] | null = this.emitsAttention ? [] : null;
    const attnRows: Float32Array[] | null = this.emitsAttention ? [] : null;
    for (let l = 0; l < numLayers; l++) {
      presentKeys.push(f32(GRAPH_IO.presentKey(l)));
      presentValues.push(f32(GRAPH_IO.presentValue(l)));
      attnSum?.push(f32(GRAPH_IO.attnSum(l)));
      attnRows?.push(f32(GRAPH_IO.attnRows(l)));
    }
    return { logits: f32(GRAPH_IO.logits), presentKeys, presentValues, attnSum, attnRows };
  }

  async release(): Promise<void> {
    if (!this.owner) return;
    if (this.profiling) this.session.endProfiling();
    await this.session.release();
  }

  stats(): Readonly<Record<string, number>> {
    return {};
  }
}

/**
 * The feeds an all-variant graph needs from a step of `variant` beyond the
 * step's own: the variant code, and placeholders (one page, batch 1) for the
 * statistics and Quest inputs the chosen If branches never read.
 */
function placeholderFeeds(shape: DecoderShape, variant: DecoderVariant): Record<string, ort.Tensor> {
  const { numLayers, numKvHeads: KV, headDim: D } = shape;
  const feeds: Record<string, ort.Tensor> = { [GRAPH_IO.variant]: new ort.Tensor('int64', BigInt64Array.of(BigInt(VARIANT_CODE[variant])), [1]) };
  const one = new ort.Tensor('int64', BigInt64Array.of(1n), [1]);
  if (variant !== 'stats') feeds[GRAPH_IO.attnWindow] = one;
  if (variant !== 'quest') {
    feeds[GRAPH_IO.pageSize] = one;
    const bound = new ort.Tensor('float32', new Float32Array(KV * D), [1, KV, 1, D]);
    const bias = new ort.Tensor('float32', new Float32Array(KV), [1, KV, 1]);
    for (let l = 0; l < numLayers; l++) {
      feeds[GRAPH_IO.pageMin(l)] = bound;
      feeds[GRAPH_IO.pageMax(l)] = bound;
      feeds[GRAPH_IO.pageBias(l)] = bias;
      feeds[GRAPH_IO.questK(l)] = one;
    }
  }
  return feeds;
}

/** The onnxruntime version, for benchmark and health reports. */
export function runtimeVersion(): string {
  return ort.env.versions.common;
}
