/**
 * The only module that imports onnxruntime-node. Wraps one compiled decoder
 * graph: builds tensors from the engine's typed arrays, checks them against the
 * session's declared inputs, and hands back plain typed arrays.
 */
import * as ort from 'onnxruntime-node';
import { GRAPH_IO } from '../model/compile/decoder-graph.js';
import type { ModelRunner } from './model-runner.js';

export type { DecoderStepInputs, DecoderStepOutputs, LayerPast, QuestInputs, QuestLayerInputs } from '../model/step-io.js';
import type { DecoderStepInputs, DecoderStepOutputs } from '../model/step-io.js';

export interface DecoderShape {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
}

export interface SessionOptions {
  readonly threads: number;
}

export class DecoderSession implements ModelRunner {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly shape: DecoderShape,
    readonly emitsAttention: boolean,
    readonly selectsPages: boolean,
  ) {}

  static async create(path: string, shape: DecoderShape, options: SessionOptions): Promise<DecoderSession> {
    const session = await ort.InferenceSession.create(path, {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      enableCpuMemArena: true,
      enableMemPattern: false,
      // CAPSERVE_ORT_PROFILE=prefix writes onnxruntime's per-node timing JSON (for performance work).
      ...(process.env['CAPSERVE_ORT_PROFILE'] ? { enableProfiling: true, profileFilePrefix: process.env['CAPSERVE_ORT_PROFILE'] } : {}),
    });
    const emitsAttention = session.outputNames.includes(GRAPH_IO.attnSum(0));
    const selectsPages = session.inputNames.includes(GRAPH_IO.pageSize);
    return new DecoderSession(session, shape, emitsAttention, selectsPages);
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
    inputs.layers.forEach((layer, l) => {
      put(GRAPH_IO.pastKey(l), 'float32', layer.keys, [B, KV, layer.capacity, D]);
      put(GRAPH_IO.pastValue(l), 'float32', layer.values, [B, KV, layer.capacity, D]);
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
    const missing = this.session.inputNames.filter((n) => !(n in feeds));
    if (missing.length > 0) throw new Error(`decoder inputs missing: ${missing.join(', ')}`);
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await this.session.run(feeds);
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
    if (process.env['CAPSERVE_ORT_PROFILE']) this.session.endProfiling();
    await this.session.release();
  }

  stats(): Readonly<Record<string, number>> {
    return {};
  }
}

/** The onnxruntime version, for benchmark and health reports. */
export function runtimeVersion(): string {
  return ort.env.versions.common;
}
