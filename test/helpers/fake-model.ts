/**
 * A model without onnxruntime and without ../shared, for unit tests of the
 * scheduler, the executor and the policy runtimes: a tiny ModelSpec, a
 * character tokenizer, and a fake ModelRunner whose outputs have the graph's
 * shapes (logits that always pick `(last input id + 1) % vocab`, KV rows
 * holding each token's id, attention statistics when asked) and that records
 * every pass it runs and fails on demand.
 */
import { parseModelSpec } from '../../src/model/hf-config.js';
import type { DecoderStepInputs, DecoderStepOutputs } from '../../src/model/step-io.js';
import type { ModelSpec } from '../../src/model/spec.js';
import type { DecodeStream, TextTokenizer } from '../../src/model/tokenizer-types.js';
import type { ModelRunner } from '../../src/runtime/model-runner.js';

export function fakeSpec(overrides: Record<string, unknown> = {}): ModelSpec {
  return parseModelSpec(
    {
      model_type: 'llama',
      hidden_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      intermediate_size: 32,
      vocab_size: 64,
      max_position_embeddings: 4096,
      eos_token_id: 0,
      bos_token_id: 1,
      ...overrides,
    },
    null,
    'config.json',
  );
}

/** One character per id ('a' + id % 26). */
export function fakeTokenizer(vocabSize: number): TextTokenizer {
  const piece = (id: number): string => String.fromCharCode(97 + (id % 26));
  const stream = (): DecodeStream => ({ push: piece, flush: () => '', peek: (ids) => ids.map(piece) });
  return {
    vocabSize,
    encode: (text) => [...text].map((c) => (c.charCodeAt(0) - 97 + 26) % 26),
    decode: (ids) => ids.map(piece).join(''),
    idToPiece: piece,
    createDecodeStream: stream,
    tokenText: (_context, id) => piece(id),
    tokenTexts: (_context, ids) => ids.map(piece),
  };
}

export interface PassRecord {
  readonly batch: number;
  readonly newTokens: number;
  readonly inputIds: readonly number[];
  readonly attnWindow: number | null;
  readonly quest: boolean;
}

export class FakeRunner implements ModelRunner {
  readonly passes: PassRecord[] = [];
  /** Fails the next pass whose input ids include this token. */
  failOnToken: number | null = null;

  constructor(
    private readonly spec: ModelSpec,
    /** Emit attention statistics (the stats variant). */
    private readonly emitStats = false,
  ) {}

  run(inputs: DecoderStepInputs): Promise<DecoderStepOutputs> {
    const ids = Array.from(inputs.inputIds, Number);
    this.passes.push({ batch: inputs.batch, newTokens: inputs.newTokens, inputIds: ids, attnWindow: inputs.attnWindow, quest: inputs.quest !== undefined });
    if (this.failOnToken !== null && ids.includes(this.failOnToken)) {
      this.failOnToken = null;
      return Promise.reject(new Error('injected pass failure'));
    }
    const { vocabSize: V, numLayers: L, numKvHeads: KV, headDim: D } = this.spec;
    const B = inputs.batch;
    const T = inputs.newTokens;
    const K = inputs.logitCount;
    const logits = new Float32Array(B * K * V);
    for (let b = 0; b < B; b++) {
      for (let k = 0; k < K; k++) {
        const t = Number(inputs.logitIndex[b * K + k] ?? BigInt(T - 1));
        const id = ids[b * T + t] ?? 0;
        logits[(b * K + k) * V + ((id + 1) % V)] = 10;
      }
    }
    const present = (): Float32Array[] =>
      Array.from({ length: L }, () => {
        const a = new Float32Array(B * KV * T * D);
        for (let b = 0; b < B; b++)
          for (let h = 0; h < KV; h++) for (let t = 0; t < T; t++) a.fill(ids[b * T + t] ?? 0, ((b * KV + h) * T + t) * D, ((b * KV + h) * T + t + 1) * D);
        return a;
      });
    const G = this.spec.numHeads / KV;
    const W = Math.max(1, inputs.attnWindow ?? 1);
    const width = (l: number): number => (inputs.layers[l]?.capacity ?? 0) + T;
    return Promise.resolve({
      logits,
      presentKeys: present(),
      presentValues: present(),
      attnSum: this.emitStats ? Array.from({ length: L }, (_, l) => new Float32Array(B * KV * width(l)).fill(1)) : null,
      attnRows: this.emitStats ? Array.from({ length: L }, (_, l) => new Float32Array(B * KV * G * W * width(l)).fill(1 / width(l))) : null,
    });
  }

  release(): Promise<void> {
    return Promise.resolve();
  }

  stats(): Readonly<Record<string, number>> {
    return {};
  }
}
