/**
 * The only module that imports onnxruntime-node. Wraps one compiled decoder
 * graph: builds tensors from the engine's typed arrays, checks them against the
 * session's declared inputs, and hands back plain typed arrays.
 */
import * as ort from 'onnxruntime-node';
import { GRAPH_IO } from '../model/compile/decoder-graph.js';
import type { ModelRunner } from './model-runner.js';

export interface DecoderStepInputs {
  readonly batch: number;
  /** New tokens per row (T). */
  readonly newTokens: number;
  /** Past KV entries per row (P), padded to the longest row. */
  readonly past: number;
  /** Logit positions per row (K). */
  readonly logitCount: number;
  readonly inputIds: BigInt64Array;
  readonly positionIds: BigInt64Array;
  /** [B, 1, T, P+T] additive mask. */
  readonly attnBias: Float32Array;
  readonly logitIndex: BigInt64Array;
  /** Per layer [B, P, kvH, D]. */
  readonly pastKeys: readonly Float32Array[];
  readonly pastValues: readonly Float32Array[];
}

export interface DecoderStepOutputs {
  /** [B, K, V] */
  readonly logits: Float32Array;
  /** Per layer [B, T, kvH, D]. */
  readonly presentKeys: Float32Array[];
  readonly presentValues: Float32Array[];
  /** Per layer [B, kvH, G, T, P+T], only from the attention variant. */
  readonly attention: Float32Array[] | null;
}

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
    });
    const emitsAttention = session.outputNames.includes(GRAPH_IO.attention(0));
    return new DecoderSession(session, shape, emitsAttention);
  }

  async run(inputs: DecoderStepInputs): Promise<DecoderStepOutputs> {
    const { batch: B, newTokens: T, past: P, logitCount: K } = inputs;
    const { numLayers, numKvHeads: KV, headDim: D } = this.shape;
    const feeds: Record<string, ort.Tensor> = {};
    const put = (name: string, tensor: ort.Tensor, expected: number): void => {
      if (tensor.data.length !== expected) {
        throw new Error(
          `decoder input ${name}: ${tensor.type} [${tensor.dims.join(', ')}] holds ${tensor.data.length} values, expected ${expected}`,
        );
      }
      feeds[name] = tensor;
    };
    put(GRAPH_IO.inputIds, new ort.Tensor('int64', inputs.inputIds, [B, T]), B * T);
    put(GRAPH_IO.positionIds, new ort.Tensor('int64', inputs.positionIds, [B, T]), B * T);
    put(GRAPH_IO.attnBias, new ort.Tensor('float32', inputs.attnBias, [B, 1, T, P + T]), B * T * (P + T));
    put(GRAPH_IO.logitIndex, new ort.Tensor('int64', inputs.logitIndex, [B, K]), B * K);
    for (let l = 0; l < numLayers; l++) {
      const k = inputs.pastKeys[l];
      const v = inputs.pastValues[l];
      if (!k || !v) throw new Error(`decoder input past_key_${l}/past_value_${l} missing (model has ${numLayers} layers)`);
      put(GRAPH_IO.pastKey(l), new ort.Tensor('float32', k, [B, P, KV, D]), B * P * KV * D);
      put(GRAPH_IO.pastValue(l), new ort.Tensor('float32', v, [B, P, KV, D]), B * P * KV * D);
    }
    const missing = this.session.inputNames.filter((n) => !(n in feeds));
    if (missing.length > 0) throw new Error(`decoder inputs missing: ${missing.join(', ')}`);
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await this.session.run(feeds);
    } catch (err) {
      const described = Object.entries(feeds)
        .slice(0, 6)
        .map(([n, t]) => `${n}: ${t.type} [${t.dims.join(', ')}]`)
        .join('; ');
      throw new Error(`onnxruntime run failed (${(err as Error).message}); inputs ${described} ...`);
    }
    const f32 = (name: string): Float32Array => {
      const t = out[name];
      if (!t || !(t.data instanceof Float32Array)) throw new Error(`decoder output ${name} missing or not float32`);
      return t.data;
    };
    const presentKeys: Float32Array[] = [];
    const presentValues: Float32Array[] = [];
    const attention: Float32Array[] | null = this.emitsAttention ? [] : null;
    for (let l = 0; l < numLayers; l++) {
      presentKeys.push(f32(GRAPH_IO.presentKey(l)));
      presentValues.push(f32(GRAPH_IO.presentValue(l)));
      attention?.push(f32(GRAPH_IO.attention(l)));
    }
    return { logits: f32(GRAPH_IO.logits), presentKeys, presentValues, attention };
  }

  async release(): Promise<void> {
    await this.session.release();
  }

  stats(): Readonly<Record<string, number>> {
    return {};
  }
}

/** The onnxruntime version, for benchmark and health reports. */
export function runtimeVersion(): string {
  return ort.env.versions.common ?? 'unknown';
}
