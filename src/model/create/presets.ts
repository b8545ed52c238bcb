/**
 * Shapes of the generated models, written out as Hugging Face config.json fields so
 * the generated checkpoint goes through exactly the same import path as a real one.
 */
import { CAUSAL_LM_CLASS, type Architecture } from '../spec.js';
import { BOS_ID, EOS_ID, IM_END_ID } from './tokenizer-builder.js';

export type Preset = 'tiny' | 'small' | '135m';

export const PRESETS: readonly Preset[] = ['tiny', 'small', '135m'];

interface Shape {
  readonly hidden: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly intermediate: number;
  readonly vocab: number;
  readonly maxPositions: number;
  /** Mistral's window: small enough in tiny/small that short tests cross it. */
  readonly mistralWindow: number;
}

const SHAPES: Readonly<Record<Preset, Shape>> = {
  tiny: { hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 128, vocab: 512, maxPositions: 4096, mistralWindow: 16 },
  small: { hidden: 256, layers: 4, heads: 8, kvHeads: 4, intermediate: 512, vocab: 2048, maxPositions: 8192, mistralWindow: 64 },
  // SmolLM-135M's shape.
  '135m': { hidden: 576, layers: 30, heads: 9, kvHeads: 3, intermediate: 1536, vocab: 49152, maxPositions: 8192, mistralWindow: 4096 },
};

/**
 * MoE shapes. tiny and small for tests; '135m' is the benchmark size: 8 layers of
 * 8 experts (1.6M parameters each, 6.3 MB in fp32, 400 MB of experts in all), so
 * expert bytes dwarf the ~15M resident parameters, as in real MoE models.
 */
interface MoeShape {
  readonly experts: number;
  readonly topK: number;
  readonly expertIntermediate: number;
  /** Qwen2-MoE's shared expert width. */
  readonly sharedIntermediate: number;
}

const MOE_SHAPES: Readonly<Record<Preset, { readonly base: Shape; readonly moe: MoeShape }>> = {
  tiny: { base: { ...SHAPES.tiny }, moe: { experts: 4, topK: 2, expertIntermediate: 64, sharedIntermediate: 96 } },
  small: { base: { ...SHAPES.small }, moe: { experts: 8, topK: 2, expertIntermediate: 256, sharedIntermediate: 512 } },
  '135m': {
    base: { hidden: 512, layers: 8, heads: 8, kvHeads: 4, intermediate: 1024, vocab: 4096, maxPositions: 8192, mistralWindow: 4096 },
    moe: { experts: 8, topK: 2, expertIntermediate: 1024, sharedIntermediate: 1024 },
  },
};

function isMoe(arch: Architecture): boolean {
  return arch === 'mixtral' || arch === 'qwen2_moe' || arch === 'qwen3_moe';
}

export function presetVocabSize(preset: Preset): number {
  return SHAPES[preset].vocab;
}

/**
 * Tied embeddings at 135m (as SmolLM and small Qwen2 ship); at tiny/small llama and
 * mistral keep a separate lm_head so both layouts are exercised.
 */
function tied(arch: Architecture, preset: Preset): boolean {
  if (isMoe(arch)) return arch === 'qwen2_moe';
  // SmolLM3 always ties; Qwen3 and Phi-3 keep an lm_head at tiny/small.
  return preset === '135m' || arch === 'qwen2' || arch === 'smollm3' || arch === 'gemma2' || arch === 'gemma3_text';
}

export function presetConfig(arch: Architecture, preset: Preset): Record<string, unknown> {
  const s = isMoe(arch) ? MOE_SHAPES[preset].base : SHAPES[preset];
  const config: Record<string, unknown> = {
    architectures: [CAUSAL_LM_CLASS[arch]],
    model_type: arch,
    hidden_size: s.hidden,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.hidden / s.heads,
    intermediate_size: s.intermediate,
    vocab_size: s.vocab,
    hidden_act: 'silu',
    max_position_embeddings: s.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    tie_word_embeddings: tied(arch, preset),
    bos_token_id: BOS_ID,
    eos_token_id: EOS_ID,
    initializer_range: 0.02,
    attention_dropout: 0.0,
    torch_dtype: 'float32',
    use_cache: true,
  };
  if (arch === 'llama') {
    config.attention_bias = false;
    config.mlp_bias = false;
  } else if (arch === 'qwen2') {
    config.use_sliding_window = false;
    config.sliding_window = s.maxPositions;
    config.max_window_layers = s.layers;
  } else if (arch === 'mistral') {
    config.sliding_window = s.mistralWindow;
  } else if (arch === 'qwen3') {
    // head_dim independent of hidden / heads, as in Qwen3 (e.g. 0.6B: hidden 1024, 16 heads of 128).
    config.head_dim = (3 * s.hidden) / (2 * s.heads);
    config.attention_bias = false;
    config.use_sliding_window = false;
    config.sliding_window = null;
    config.max_window_layers = s.layers;
    config.rope_theta = 1000000.0;
  } else if (arch === 'smollm3') {
    // SmolLM3-3B skips RoPE on every 4th layer; the small presets every 2nd so 2 layers have one of each.
    config.no_rope_layer_interval = preset === '135m' ? 4 : 2;
    config.use_sliding_window = false;
    config.sliding_window = null;
    config.attention_bias = false;
    config.mlp_bias = false;
    config.rope_theta = 2000000.0;
  } else if (arch === 'phi3') {
    // Phi-4-mini's shape of RoPE: 3/4 of each head rotated, LongRoPE with a short original
    // context so short prompts cross it (long factors from then on).
    const rotaryHalf = (0.75 * (s.hidden / s.heads)) / 2;
    const original = preset === '135m' ? 4096 : 32;
    config.partial_rotary_factor = 0.75;
    config.original_max_position_embeddings = original;
    config.rope_scaling = {
      type: 'longrope',
      short_factor: Array.from({ length: rotaryHalf }, (_, i) => 1 + (0.25 * i) / rotaryHalf),
      long_factor: Array.from({ length: rotaryHalf }, (_, i) => 1 + (7 * i) / rotaryHalf),
    };
    config.sliding_window = null;
    config.resid_pdrop = 0.0;
    config.embd_pdrop = 0.0;
  } else if (arch === 'gemma2' || arch === 'gemma3_text') {
    // Gemma's shape of attention: head_dim and query_pre_attn_scalar independent of hidden / heads,
    // sliding and full layers (Gemma 2 alternates; Gemma 3 has 5 sliding per full, 1 in 2 at tiny/small).
    delete config.hidden_act;
    config.hidden_activation = 'gelu_pytorch_tanh';
    config.head_dim = (2 * s.hidden) / s.heads;
    config.query_pre_attn_scalar = (3 * s.hidden) / (2 * s.heads);
    config.sliding_window = s.mistralWindow;
    config.attention_bias = false;
    config.rms_norm_eps = 1e-6;
    const fullEvery = arch === 'gemma2' || preset !== '135m' ? 2 : 6;
    config.layer_types = Array.from({ length: s.layers }, (_, i) => ((i + 1) % fullEvery !== 0 ? 'sliding_attention' : 'full_attention'));
    if (arch === 'gemma2') {
      config.attn_logit_softcapping = 50.0;
      config.final_logit_softcapping = 30.0;
    } else {
      config.rope_theta = 1000000.0;
      config.rope_local_base_freq = 10000.0;
      config.rope_scaling = { rope_type: 'linear', factor: 8.0 };
      config.final_logit_softcapping = null;
      config.attn_logit_softcapping = null;
    }
  } else if (arch === 'mixtral') {
    const m = MOE_SHAPES[preset].moe;
    config.sliding_window = null;
    config.num_local_experts = m.experts;
    config.num_experts_per_tok = m.topK;
    config.intermediate_size = m.expertIntermediate;
    config.router_jitter_noise = 0.0;
    config.output_router_logits = false;
  } else if (arch === 'qwen3_moe') {
    // Qwen3-30B-A3B's shape of MoE: q/k norms, head_dim of its own, top-k renormalised, no shared expert.
    const m = MOE_SHAPES[preset].moe;
    config.head_dim = (3 * s.hidden) / (2 * s.heads);
    config.attention_bias = false;
    config.use_sliding_window = false;
    config.sliding_window = null;
    config.max_window_layers = s.layers;
    config.num_experts = m.experts;
    config.num_experts_per_tok = m.topK;
    config.moe_intermediate_size = m.expertIntermediate;
    config.norm_topk_prob = true;
    config.decoder_sparse_step = 1;
    config.mlp_only_layers = [];
    config.output_router_logits = false;
    config.rope_theta = 1000000.0;
  } else {
    const m = MOE_SHAPES[preset].moe;
    config.use_sliding_window = false;
    config.sliding_window = s.maxPositions;
    config.max_window_layers = s.layers;
    config.num_experts = m.experts;
    config.num_experts_per_tok = m.topK;
    config.moe_intermediate_size = m.expertIntermediate;
    config.shared_expert_intermediate_size = m.sharedIntermediate;
    config.norm_topk_prob = false;
    config.decoder_sparse_step = 1;
    config.mlp_only_layers = [];
    config.output_router_logits = false;
  }
  return config;
}

export function presetGenerationConfig(): Record<string, unknown> {
  return { bos_token_id: BOS_ID, eos_token_id: [EOS_ID, IM_END_ID] };
}
