/**
 * The architecture-specific parts of config.json parsing (RoPE scaling and longrope, Qwen2 and
 * SmolLM3 sliding windows and NoPE layers, partial rotary, Gemma 2/3 layer types and norms, MoE
 * routing), each as transformers reads it; `parseModelSpec` (hf-config.ts) assembles them.
 */
import { CheckpointError } from './errors.js';
import { Fields, isRecord, type Json } from './hf-config-fields.js';
import type { Architecture, MoeSpec, RopeParameters, RopeScaling } from './spec.js';

/** What longrope needs from the rest of config.json (Phi-3 keeps original_max_position_embeddings at the top level). */
export interface RopeContext {
  readonly rotaryDim: number;
  readonly maxPositionEmbeddings: number;
  readonly originalMaxPositionEmbeddings: number | null;
  readonly allowLongrope: boolean;
}

export function parseRopeScaling(raw: unknown, file: string, field: string, ctx: RopeContext): RopeScaling | null {
  if (raw === undefined || raw === null) return null;
  if (!isRecord(raw)) throw new CheckpointError('bad_config', file, `${field} must be an object or null`);
  let type = raw.rope_type ?? raw.type;
  const f = new Fields(raw, file, `${field}.`);
  if (type === undefined || type === 'default') return null;
  // transformers' Phi3Config renames the old spellings.
  if (ctx.allowLongrope && (type === 'su' || type === 'yarn')) type = 'longrope';
  if (type === 'longrope' && ctx.allowLongrope) {
    const original = f.has('original_max_position_embeddings') ? f.positiveInt('original_max_position_embeddings') : ctx.originalMaxPositionEmbeddings;
    if (original === null) throw new CheckpointError('bad_config', file, `${field}.original_max_position_embeddings is required for longrope`);
    // As transformers: factor defaults to max_position_embeddings / original, and the
    // attention factor to sqrt(1 + ln(factor) / ln(original)) when factor > 1.
    const factor = f.has('factor') ? f.positiveNumber('factor') : ctx.maxPositionEmbeddings / original;
    const attentionFactor = f.has('attention_factor')
      ? f.positiveNumber('attention_factor')
      : factor <= 1
        ? 1
        : Math.sqrt(1 + Math.log(factor) / Math.log(original));
    return {
      type: 'longrope',
      shortFactor: Object.freeze(f.numberList('short_factor', ctx.rotaryDim / 2)),
      longFactor: Object.freeze(f.numberList('long_factor', ctx.rotaryDim / 2)),
      originalMaxPositionEmbeddings: original,
      attentionFactor,
    };
  }
  if (type === 'linear') return { type: 'linear', factor: f.positiveNumber('factor') };
  if (type === 'llama3') {
    const lowFreqFactor = f.positiveNumber('low_freq_factor');
    const highFreqFactor = f.positiveNumber('high_freq_factor');
    if (highFreqFactor <= lowFreqFactor) {
      throw new CheckpointError('bad_config', file, `${field}.high_freq_factor (${highFreqFactor}) must exceed low_freq_factor (${lowFreqFactor})`);
    }
    return {
      type: 'llama3',
      factor: f.positiveNumber('factor'),
      lowFreqFactor,
      highFreqFactor,
      originalMaxPositionEmbeddings: f.positiveInt('original_max_position_embeddings'),
    };
  }
  const supported = ctx.allowLongrope ? 'null, default, linear, llama3, longrope' : 'null, default, linear, llama3';
  throw new CheckpointError('unsupported_config', file, `${field} type ${JSON.stringify(type)} is not supported (supported: ${supported})`);
}

/** Qwen2 slides only on layers >= max_window_layers, and only with use_sliding_window. */
export function qwen2SlidingWindow(config: Json, f: Fields, numLayers: number, file: string): number | null {
  let kinds: unknown[];
  if (Array.isArray(config.layer_types)) {
    kinds = config.layer_types;
  } else {
    if (!f.bool('use_sliding_window', false) || !f.has('sliding_window')) return null;
    const first = f.nonNegativeInt('max_window_layers', 28);
    kinds = Array.from({ length: numLayers }, (_, i) => (i >= first ? 'sliding_attention' : 'full_attention'));
  }
  if (kinds.every((k) => k === 'full_attention')) return null;
  if (kinds.every((k) => k === 'sliding_attention')) return f.positiveInt('sliding_window');
  throw new CheckpointError('unsupported_config', file, 'a mix of sliding-window and full-attention layers (max_window_layers / layer_types) is not supported');
}

/** Phi-3's partial_rotary_factor (top level, or in rope_parameters); every other family rotates whole heads. */
export function parseRotaryDim(architecture: Architecture, f: Fields, ropeFields: Fields | null, headDim: number, file: string): number {
  if (architecture !== 'phi3') return headDim;
  const factor = f.has('partial_rotary_factor')
    ? f.positiveNumber('partial_rotary_factor')
    : ropeFields?.has('partial_rotary_factor') === true
      ? ropeFields.positiveNumber('partial_rotary_factor')
      : 1;
  if (factor > 1) throw new CheckpointError('bad_config', file, `partial_rotary_factor (${factor}) must be at most 1`);
  const dim = Math.floor(headDim * factor);
  if (dim === 0 || dim % 2 !== 0) {
    throw new CheckpointError(
      'bad_config',
      file,
      `head_dim (${headDim}) x partial_rotary_factor (${factor}) = ${dim} rotary dimensions; must be even and positive`,
    );
  }
  return dim;
}

/**
 * SmolLM3Config: no_rope_layers[i] is 1 where layer i uses RoPE and 0 on a NoPE layer;
 * when absent, every no_rope_layer_interval-th layer (i + 1 divisible by it) is NoPE.
 */
export function smollm3RopeLayers(f: Fields, numLayers: number): boolean[] {
  if (f.has('no_rope_layers')) {
    const list = f.intList('no_rope_layers');
    if (list.length < numLayers || list.some((v) => v > 1)) {
      throw f.error('no_rope_layers', `must list 0 (NoPE) or 1 (RoPE) for each of the ${numLayers} layers, got ${JSON.stringify(list)}`);
    }
    return list.slice(0, numLayers).map((v) => v === 1);
  }
  const interval = f.positiveInt('no_rope_layer_interval', 4);
  return Array.from({ length: numLayers }, (_, i) => (i + 1) % interval !== 0);
}

/** SmolLM3 slides only on NoPE layers, and only with use_sliding_window and a sliding_window. */
export function smollm3SlidingWindow(f: Fields, ropeLayers: readonly boolean[], file: string): number | null {
  if (!f.bool('use_sliding_window', false) || !f.has('sliding_window')) return null;
  if (ropeLayers.every((r) => !r)) return f.positiveInt('sliding_window');
  if (ropeLayers.every((r) => r)) return null;
  throw new CheckpointError(
    'unsupported_config',
    file,
    'use_sliding_window with both RoPE and NoPE layers (sliding NoPE layers beside full RoPE layers) is not supported',
  );
}

export interface GemmaParts {
  readonly layerWindows: (number | null)[];
  readonly fullRope: RopeParameters;
  readonly slidingRope: RopeParameters | null;
  readonly attnLogitSoftcap: number | null;
  readonly finalLogitSoftcap: number | null;
}

/**
 * Gemma 2 and 3: layer_types (or, in older configs, every sliding_window_pattern-th
 * layer full, 2 for Gemma 2 and 6 for Gemma 3) with sliding_window on the sliding
 * ones; Gemma 3's RoPE per layer type (rope_parameters.{full,sliding}_attention, or
 * rope_theta + rope_scaling for full layers and rope_local_base_freq for sliding
 * ones); Gemma 2's soft-capping (50 and 30 unless set, null turns it off).
 */
export function parseGemma(architecture: Architecture, config: Json, f: Fields, numLayers: number, ropeContext: RopeContext, file: string): GemmaParts {
  const gemma3 = architecture === 'gemma3_text';
  let kinds: unknown[];
  if (Array.isArray(config.layer_types)) {
    kinds = config.layer_types;
    if (kinds.length !== numLayers || kinds.some((k) => k !== 'sliding_attention' && k !== 'full_attention')) {
      throw f.error('layer_types', `must list "sliding_attention" or "full_attention" for each of the ${numLayers} layers, got ${JSON.stringify(kinds)}`);
    }
  } else {
    const pattern = f.positiveInt('sliding_window_pattern', gemma3 ? 6 : 2);
    kinds = Array.from({ length: numLayers }, (_, i) => ((i + 1) % pattern !== 0 ? 'sliding_attention' : 'full_attention'));
  }
  const window = config.sliding_window === null ? null : f.positiveInt('sliding_window', 4096);
  const layerWindows = kinds.map((k) => (k === 'sliding_attention' ? window : null));

  const softcap = (field: string, fallback: number | null): number | null =>
    config[field] === null ? null : f.has(field) ? f.positiveNumber(field) : fallback;
  const attnLogitSoftcap = softcap('attn_logit_softcapping', gemma3 ? null : 50);
  const finalLogitSoftcap = softcap('final_logit_softcapping', gemma3 ? null : 30);

  const freeze = (theta: number, scaling: RopeScaling | null): RopeParameters =>
    Object.freeze({ theta, scaling: scaling === null ? null : Object.freeze(scaling) });
  const perType =
    isRecord(config.rope_parameters) && (isRecord(config.rope_parameters.full_attention) || isRecord(config.rope_parameters.sliding_attention))
      ? config.rope_parameters
      : null;
  if (!gemma3) {
    if (perType !== null)
      throw new CheckpointError('unsupported_config', file, 'rope_parameters per layer type is not supported for gemma2 (one RoPE for every layer)');
    const ropeParams = isRecord(config.rope_parameters) ? config.rope_parameters : null;
    const theta = f.has('rope_theta')
      ? f.positiveNumber('rope_theta')
      : ropeParams !== null
        ? new Fields(ropeParams, file, 'rope_parameters.').positiveNumber('rope_theta', 10000)
        : 10000;
    const scaling =
      config.rope_scaling !== undefined || ropeParams === null
        ? parseRopeScaling(config.rope_scaling, file, 'rope_scaling', ropeContext)
        : parseRopeScaling(ropeParams, file, 'rope_parameters', ropeContext);
    return { layerWindows, fullRope: freeze(theta, scaling), slidingRope: null, attnLogitSoftcap, finalLogitSoftcap };
  }
  let fullRope: RopeParameters;
  let slidingRope: RopeParameters;
  if (perType !== null) {
    const one = (key: 'full_attention' | 'sliding_attention', fallbackTheta: number): RopeParameters => {
      const raw = perType[key];
      if (raw === undefined || raw === null) return freeze(fallbackTheta, null);
      if (!isRecord(raw)) throw new CheckpointError('bad_config', file, `rope_parameters.${key} must be an object`);
      const theta = new Fields(raw, file, `rope_parameters.${key}.`).positiveNumber('rope_theta', fallbackTheta);
      return freeze(theta, parseRopeScaling(raw, file, `rope_parameters.${key}`, ropeContext));
    };
    fullRope = one('full_attention', f.positiveNumber('rope_theta', 1000000));
    slidingRope = one('sliding_attention', f.positiveNumber('rope_local_base_freq', 10000));
  } else {
    const ropeParams = isRecord(config.rope_parameters) ? config.rope_parameters : null;
    const theta = f.has('rope_theta')
      ? f.positiveNumber('rope_theta')
      : ropeParams !== null
        ? new Fields(ropeParams, file, 'rope_parameters.').positiveNumber('rope_theta', 1000000)
        : 1000000;
    const scaling =
      config.rope_scaling !== undefined || ropeParams === null
        ? parseRopeScaling(config.rope_scaling, file, 'rope_scaling', ropeContext)
        : parseRopeScaling(ropeParams, file, 'rope_parameters', ropeContext);
    fullRope = freeze(theta, scaling);
    slidingRope = freeze(f.positiveNumber('rope_local_base_freq', 10000), null);
  }
  return { layerWindows, fullRope, slidingRope, attnLogitSoftcap, finalLogitSoftcap };
}

/**
 * Mixtral: every layer sparse, top-k of softmax renormalised, experts of
 * intermediate_size. Qwen2-MoE: experts of moe_intermediate_size, renormalised only
 * with norm_topk_prob, plus a sigmoid-gated shared expert; layers turned dense by
 * decoder_sparse_step / mlp_only_layers are refused (Qwen3-MoE: the same without the shared expert) (all our graphs assume every
 * layer is sparse).
 */
export function parseMoe(architecture: Architecture, f: Fields, numLayers: number, file: string): MoeSpec | undefined {
  if (architecture === 'mixtral') {
    const numExperts = f.positiveInt('num_local_experts', 8);
    const topK = f.positiveInt('num_experts_per_tok', 2);
    if (topK > numExperts) throw new CheckpointError('bad_config', file, `num_experts_per_tok (${topK}) exceeds num_local_experts (${numExperts})`);
    return Object.freeze({
      numExperts,
      topK,
      expertIntermediateSize: f.positiveInt('intermediate_size'),
      normTopKProb: true,
      sharedExpertIntermediateSize: null,
    });
  }
  if (architecture === 'qwen2_moe' || architecture === 'qwen3_moe') {
    const qwen3 = architecture === 'qwen3_moe';
    const numExperts = f.positiveInt('num_experts', qwen3 ? 128 : 60);
    const topK = f.positiveInt('num_experts_per_tok', qwen3 ? 8 : 4);
    if (topK > numExperts) throw new CheckpointError('bad_config', file, `num_experts_per_tok (${topK}) exceeds num_experts (${numExperts})`);
    const step = f.positiveInt('decoder_sparse_step', 1);
    const dense = f.intList('mlp_only_layers').filter((l) => l < numLayers);
    if (step !== 1 || dense.length > 0) {
      throw new CheckpointError(
        'unsupported_config',
        file,
        `decoder_sparse_step ${step} / mlp_only_layers ${JSON.stringify(dense)} make some layers dense; only all-sparse ${qwen3 ? 'Qwen3' : 'Qwen2'}-MoE models are supported (decoder_sparse_step 1, mlp_only_layers [])`,
      );
    }
    // Qwen3-MoE has no shared expert.
    const shared = qwen3 ? 0 : f.nonNegativeInt('shared_expert_intermediate_size', 0);
    return Object.freeze({
      numExperts,
      topK,
      expertIntermediateSize: f.positiveInt('moe_intermediate_size', qwen3 ? 768 : undefined),
      normTopKProb: f.bool('norm_topk_prob', false),
      sharedExpertIntermediateSize: shared === 0 ? null : shared,
    });
  }
  return undefined;
}
