/**
 * The decoder graph's step contract as plain typed arrays: what one forward pass
 * reads (tokens, positions, masks, past KV, Quest page bounds) and returns
 * (logits, new KV, attention statistics). The compiled graph defines it, the
 * runtime feeds it to onnxruntime, the engine and policy runtimes fill it; it
 * lives here, at the bottom layer, so all of them can share it without
 * importing each other.
 */

/** The KV cache's storage element type, which the graph's past inputs are compiled for (fp16: float16 inputs cast in the graph). */
export type KvDtype = 'fp32' | 'fp16';

/** One layer's past KV as the graph reads it. */
export interface LayerPast {
  /** [B, KV, capacity, D]: float32, or float16 bit patterns for a graph compiled with a float16 KV cache. */
  readonly keys: Float32Array | Uint16Array;
  readonly values: Float32Array | Uint16Array;
  readonly capacity: number;
  /** [B, biasHeads, biasRows, capacity] additive mask over the past entries. */
  readonly bias: Float32Array;
  readonly biasHeads: number;
  readonly biasRows: number;
}

export interface DecoderStepInputs {
  readonly batch: number;
  /** New tokens per row (T). */
  readonly newTokens: number;
  /** Logit positions per row (K). */
  readonly logitCount: number;
  readonly inputIds: BigInt64Array;
  readonly positionIds: BigInt64Array;
  /** [B, 1, T, T] additive mask among the new tokens. */
  readonly newBias: Float32Array;
  readonly logitIndex: BigInt64Array;
  readonly layers: readonly LayerPast[];
  /** Query rows to report per layer (stats variant only); null: the session's default of 1. */
  readonly attnWindow: number | null;
  /** Quest page selection inputs (quest variant only). */
  readonly quest?: QuestInputs;
}

export interface QuestLayerInputs {
  /** [B, KV, pages, D] per-channel key bounds of each page. */
  readonly min: Float32Array;
  readonly max: Float32Array;
  /** [B, KV, pages]: +inf pins a page, -inf excludes it. */
  readonly bias: Float32Array;
  readonly pages: number;
  /** Pages to attend per KV head (<= pages). */
  readonly k: number;
}

export interface QuestInputs {
  readonly pageSize: number;
  readonly layers: readonly QuestLayerInputs[];
}

export interface DecoderStepOutputs {
  /** [B, K, V] */
  readonly logits: Float32Array;
  /** Per layer [B, KV, T, D]. */
  readonly presentKeys: Float32Array[];
  readonly presentValues: Float32Array[];
  /** Per layer [B, KV, C_l + T]: attention received, summed over the group's heads and the T queries (stats variant). */
  readonly attnSum: Float32Array[] | null;
  /** Per layer [B, KV, G, W, C_l + T]: the last W query rows (stats variant). */
  readonly attnRows: Float32Array[] | null;
}
