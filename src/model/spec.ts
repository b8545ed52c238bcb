/**
 * The normalized description of a decoder-only transformer, independent of the
 * Hugging Face config.json spelling. Everything downstream (graph compiler,
 * reference forward pass, KV accounting) reads this, never config.json.
 */
export type Architecture = 'llama' | 'qwen2' | 'mistral' | 'mixtral' | 'qwen2_moe' | 'qwen3' | 'smollm3' | 'phi3' | 'gemma2' | 'gemma3_text' | 'qwen3_moe';

export const SUPPORTED_ARCHITECTURES: readonly Architecture[] = [
  'llama',
  'qwen2',
  'mistral',
  'mixtral',
  'qwen2_moe',
  'qwen3',
  'smollm3',
  'phi3',
  'gemma2',
  'gemma3_text',
  'qwen3_moe',
];

/** A RoPE of its own (Gemma 3's sliding layers: rope_local_base_freq, no scaling). */
export interface RopeParameters {
  readonly theta: number;
  readonly scaling: RopeScaling | null;
}

/**
 * Sparse mixture-of-experts MLP (every layer): a router picks topK of numExperts
 * SwiGLU experts per token from softmax(router logits); their outputs are summed
 * with the routing weights. Set only for MoE architectures.
 */
export interface MoeSpec {
  readonly numExperts: number;
  readonly topK: number;
  /** Each routed expert's SwiGLU width. */
  readonly expertIntermediateSize: number;
  /** Renormalise the top-k routing weights to sum to 1 (Mixtral always; Qwen2-MoE's norm_topk_prob). */
  readonly normTopKProb: boolean;
  /** Qwen2-MoE's always-on shared expert (gated by sigmoid(shared_expert_gate)); null when absent. */
  readonly sharedExpertIntermediateSize: number | null;
}

export type RopeScaling =
  | { readonly type: 'linear'; readonly factor: number }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    }
  | {
      /**
       * Phi-3's LongRoPE: inv_freq divided by short_factor while the highest position
       * of the pass is below originalMaxPositionEmbeddings, by long_factor from then on
       * (transformers' dynamic update, per sequence), cos and sin scaled by attentionFactor.
       */
      readonly type: 'longrope';
      readonly shortFactor: readonly number[];
      readonly longFactor: readonly number[];
      readonly originalMaxPositionEmbeddings: number;
      readonly attentionFactor: number;
    };

export interface ModelSpec {
  readonly architecture: Architecture;
  readonly hiddenSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly intermediateSize: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | null;
  /** Channels of each head RoPE rotates (the first rotaryDim; headDim * partial_rotary_factor). */
  readonly rotaryDim: number;
  /** Per layer: whether RoPE is applied (false on SmolLM3's NoPE layers). */
  readonly ropeLayers: readonly boolean[];
  /** Per-head RMSNorm of q and k (self_attn.q_norm / k_norm, [headDim]) before RoPE (Qwen3). */
  readonly qkNorm: boolean;
  /** Phi-3's fused checkpoint layout: self_attn.qkv_proj and mlp.gate_up_proj instead of separate projections. */
  readonly packedProjections: boolean;
  /** Per layer: its sliding window in tokens, or null for full attention (Gemma's layer_types). */
  readonly layerWindows: readonly (number | null)[];
  /** The RoPE of the sliding-window layers when it differs from ropeTheta / ropeScaling (Gemma 3); null: one RoPE. */
  readonly slidingRope: RopeParameters | null;
  /** Gemma: every RMSNorm multiplies by (1 + weight). */
  readonly normUnitOffset: boolean;
  /** Embeddings are multiplied by this (Gemma: sqrt(hidden_size) rounded to float32; 1 elsewhere). */
  readonly embedScale: number;
  /** The gated MLP's activation: SiLU (SwiGLU) or Gemma's tanh-approximated GELU (GeGLU). */
  readonly hiddenAct: 'silu' | 'gelu_tanh';
  /**
   * Gemma's four norms per layer: post_attention_layernorm normalizes the attention
   * output before the residual add, pre_feedforward_layernorm is the MLP's input norm,
   * post_feedforward_layernorm normalizes the MLP output.
   */
  readonly sandwichNorms: boolean;
  /** Attention scores are q.k times this (1/sqrt(head_dim); Gemma: query_pre_attn_scalar^-0.5). */
  readonly attentionScale: number;
  /** Gemma 2: scores become cap * tanh(scores / cap) before the mask; null: none. */
  readonly attnLogitSoftcap: number | null;
  /** Gemma 2: logits become cap * tanh(logits / cap); null: none. */
  readonly finalLogitSoftcap: number | null;
  readonly maxPositionEmbeddings: number;
  readonly tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (qwen2, or llama with attention_bias). */
  readonly attentionBias: boolean;
  /** o_proj carries a bias (llama attention_bias). */
  readonly outputBias: boolean;
  /** Mistral-style sliding window on every layer, in tokens; null when some layer attends fully (see layerWindows). */
  readonly slidingWindow: number | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  /** Present for MoE architectures (mixtral, qwen2_moe, qwen3_moe); the dense MLP (intermediateSize) is then unused. */
  readonly moe?: MoeSpec;
}

/** One tensor of a checkpoint, converted to float32 on read. */
export interface WeightTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Read access to a checkpoint's tensors by Hugging Face name (e.g. model.layers.0.self_attn.q_proj.weight). */
export interface WeightSource {
  names(): readonly string[];
  has(name: string): boolean;
  /** Throws a CheckpointError naming the file and tensor when missing or malformed. */
  get(name: string): WeightTensor;
}

/** The transformers class each architecture's config.json names in `architectures`. */
export const CAUSAL_LM_CLASS: Readonly<Record<Architecture, string>> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  mistral: 'MistralForCausalLM',
  mixtral: 'MixtralForCausalLM',
  qwen2_moe: 'Qwen2MoeForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  smollm3: 'SmolLM3ForCausalLM',
  phi3: 'Phi3ForCausalLM',
  gemma2: 'Gemma2ForCausalLM',
  gemma3_text: 'Gemma3ForCausalLM',
  qwen3_moe: 'Qwen3MoeForCausalLM',
};
