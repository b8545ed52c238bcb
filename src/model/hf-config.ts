/**
 * Hugging Face config.json (+ generation_config.json) -> ModelSpec. Defaults are the
 * ones transformers' config classes apply, so a config that loads in transformers
 * means the same thing here; anything we cannot run faithfully is refused by name.
 */
import { CheckpointError } from './errors.js';
import { SUPPORTED_ARCHITECTURES, type Architecture, type ModelSpec, type MoeSpec, type RopeParameters, type RopeScaling } from './spec.js';

const CAUSAL_LM_CLASS: Readonly<Record<Architecture, string>> = {
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

/** transformers' per-architecture defaults for fields a config may omit. */
const DEFAULTS: Readonly<Record<Architecture, { rmsNormEps: number; ropeTheta: number; maxPositionEmbeddings: number }>> = {
  llama: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 2048 },
  qwen2: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 32768 },
  mistral: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 4096 * 32 },
  mixtral: { rmsNormEps: 1e-5, ropeTheta: 1e6, maxPositionEmbeddings: 4096 * 32 },
  qwen2_moe: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 32768 },
  qwen3: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 32768 },
  smollm3: { rmsNormEps: 1e-6, ropeTheta: 2000000, maxPositionEmbeddings: 32768 },
  phi3: { rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 4096 },
  gemma2: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 8192 },
  gemma3_text: { rmsNormEps: 1e-6, ropeTheta: 1000000, maxPositionEmbeddings: 131072 },
  qwen3_moe: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 32768 },
};

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class Fields {
  constructor(
    private readonly obj: Json,
    private readonly file: string,
    private readonly prefix = '',
  ) {}

  error(field: string, why: string): CheckpointError {
    return this.bad(field, why);
  }

  private bad(field: string, why: string): CheckpointError {
    return new CheckpointError('bad_config', this.file, `${this.prefix}${field} ${why}`);
  }

  has(field: string): boolean {
    return this.obj[field] !== undefined && this.obj[field] !== null;
  }

  positiveInt(field: string, fallback?: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw this.bad(field, 'is required but missing');
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw this.bad(field, `must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }

  nonNegativeInt(field: string, fallback: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw this.bad(field, `must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v;
  }

  positiveNumber(field: string, fallback?: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw this.bad(field, 'is required but missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw this.bad(field, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw this.bad(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A token id or list of ids; undefined when absent, [] when null. */
  intList(field: string): number[] {
    const v = this.obj[field];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0)) {
      throw this.bad(field, `must be a list of non-negative integers, got ${JSON.stringify(v)}`);
    }
    return v as number[];
  }

  /** A list of finite numbers of the given length (RoPE factors). */
  numberList(field: string, length: number): number[] {
    const v = this.obj[field];
    if (v === undefined || v === null) throw this.bad(field, 'is required but missing');
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x <= 0)) {
      throw this.bad(field, `must be a list of positive numbers, got ${JSON.stringify(v)}`);
    }
    if (v.length !== length) throw this.bad(field, `must have ${length} values (rotary dimensions / 2), got ${v.length}`);
    return v as number[];
  }

  tokenIds(field: string): number[] | undefined {
    const v = this.obj[field];
    if (v === undefined) return undefined;
    if (v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw this.bad(field, `must be a token id or a list of token ids, got ${JSON.stringify(v)}`);
    }
    return list as number[];
  }
}

function parseArchitecture(config: Json, file: string): Architecture {
  const modelType = config.model_type;
  const supported = SUPPORTED_ARCHITECTURES.map((a) => `${a} (${CAUSAL_LM_CLASS[a]})`).join(', ');
  if (typeof modelType !== 'string') throw new CheckpointError('bad_config', file, `model_type is required but missing (supported: ${supported})`);
  const arch = SUPPORTED_ARCHITECTURES.find((a) => a === modelType);
  if (arch === undefined) {
    throw new CheckpointError('unsupported_architecture', file, `model_type ${JSON.stringify(modelType)} is not supported (supported: ${supported})`);
  }
  const classes = config.architectures;
  if (Array.isArray(classes) && classes.length > 0 && !classes.includes(CAUSAL_LM_CLASS[arch])) {
    throw new CheckpointError(
      'unsupported_architecture',
      file,
      `architectures ${JSON.stringify(classes)} has no ${CAUSAL_LM_CLASS[arch]}; only causal language models are supported (supported: ${supported})`,
    );
  }
  return arch;
}

/** What longrope needs from the rest of config.json (Phi-3 keeps original_max_position_embeddings at the top level). */
interface RopeContext {
  readonly rotaryDim: number;
  readonly maxPositionEmbeddings: number;
  readonly originalMaxPositionEmbeddings: number | null;
  readonly allowLongrope: boolean;
}

function parseRopeScaling(raw: unknown, file: string, field: string, ctx: RopeContext): RopeScaling | null {
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
function qwen2SlidingWindow(config: Json, f: Fields, numLayers: number, file: string): number | null {
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
function parseRotaryDim(architecture: Architecture, f: Fields, ropeFields: Fields | null, headDim: number, file: string): number {
  if (architecture !== 'phi3') return headDim;
  const factor = f.has('partial_rotary_factor')
    ? f.positiveNumber('partial_rotary_factor')
    : ropeFields?.has('partial_rotary_factor') === true
      ? ropeFields.positiveNumber('partial_rotary_factor')
      : 1;
  if (factor > 1) throw new CheckpointError('bad_config', file, `partial_rotary_factor (${factor}) must be at most 1`);
  const dim = Math.floor(headDim * factor);
  if (dim === 0 || dim % 2 !== 0) {
    throw new CheckpointError('bad_config', file, `head_dim (${headDim}) x partial_rotary_factor (${factor}) = ${dim} rotary dimensions; must be even and positive`);
  }
  return dim;
}

/**
 * SmolLM3Config: no_rope_layers[i] is 1 where layer i uses RoPE and 0 on a NoPE layer;
 * when absent, every no_rope_layer_interval-th layer (i + 1 divisible by it) is NoPE.
 */
function smollm3RopeLayers(f: Fields, numLayers: number): boolean[] {
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
function smollm3SlidingWindow(f: Fields, ropeLayers: readonly boolean[], file: string): number | null {
  if (!f.bool('use_sliding_window', false) || !f.has('sliding_window')) return null;
  if (ropeLayers.every((r) => !r)) return f.positiveInt('sliding_window');
  if (ropeLayers.every((r) => r)) return null;
  throw new CheckpointError('unsupported_config', file, 'use_sliding_window with both RoPE and NoPE layers (sliding NoPE layers beside full RoPE layers) is not supported');
}

interface GemmaParts {
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
function parseGemma(architecture: Architecture, config: Json, f: Fields, numLayers: number, ropeContext: RopeContext, file: string): GemmaParts {
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

  const softcap = (field: string, fallback: number | null): number | null => (config[field] === null ? null : f.has(field) ? f.positiveNumber(field) : fallback);
  const attnLogitSoftcap = softcap('attn_logit_softcapping', gemma3 ? null : 50);
  const finalLogitSoftcap = softcap('final_logit_softcapping', gemma3 ? null : 30);

  const freeze = (theta: number, scaling: RopeScaling | null): RopeParameters => Object.freeze({ theta, scaling: scaling === null ? null : Object.freeze(scaling) });
  const perType = isRecord(config.rope_parameters) && (isRecord(config.rope_parameters.full_attention) || isRecord(config.rope_parameters.sliding_attention))
    ? config.rope_parameters
    : null;
  if (!gemma3) {
    if (perType !== null) throw new CheckpointError('unsupported_config', file, 'rope_parameters per layer type is not supported for gemma2 (one RoPE for every layer)');
    const ropeParams = isRecord(config.rope_parameters) ? config.rope_parameters : null;
    const theta = f.has('rope_theta') ? f.positiveNumber('rope_theta') : ropeParams !== null ? new Fields(ropeParams, file, 'rope_parameters.').positiveNumber('rope_theta', 10000) : 10000;
    const scaling = config.rope_scaling !== undefined || ropeParams === null
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
    const theta = f.has('rope_theta') ? f.positiveNumber('rope_theta') : ropeParams !== null ? new Fields(ropeParams, file, 'rope_parameters.').positiveNumber('rope_theta', 1000000) : 1000000;
    const scaling = config.rope_scaling !== undefined || ropeParams === null
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
function parseMoe(architecture: Architecture, f: Fields, numLayers: number, file: string): MoeSpec | undefined {
  if (architecture === 'mixtral') {
    const numExperts = f.positiveInt('num_local_experts', 8);
    const topK = f.positiveInt('num_experts_per_tok', 2);
    if (topK > numExperts) throw new CheckpointError('bad_config', file, `num_experts_per_tok (${topK}) exceeds num_local_experts (${numExperts})`);
    return Object.freeze({ numExperts, topK, expertIntermediateSize: f.positiveInt('intermediate_size'), normTopKProb: true, sharedExpertIntermediateSize: null });
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

export function parseModelSpec(configJson: unknown, generationConfig: unknown | null, file: string): ModelSpec {
  if (!isRecord(configJson)) throw new CheckpointError('bad_config', file, 'is not a JSON object');
  const config = configJson;
  const architecture = parseArchitecture(config, file);
  const f = new Fields(config, file);
  const defaults = DEFAULTS[architecture];

  const hiddenSize = f.positiveInt('hidden_size');
  const numLayers = f.positiveInt('num_hidden_layers');
  const numHeads = f.positiveInt('num_attention_heads');
  const numKvHeads = f.positiveInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new CheckpointError('bad_config', file, `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  const gemma = architecture === 'gemma2' || architecture === 'gemma3_text';
  // Qwen3Config's head_dim defaults to 128, Gemma's to 256, whatever hidden_size / num_attention_heads is.
  const headDimDefault = architecture === 'qwen3' ? 128 : gemma ? 256 : hiddenSize / numHeads;
  if (!f.has('head_dim') && !Number.isInteger(headDimDefault)) {
    throw new CheckpointError('bad_config', file, `hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and head_dim is not given`);
  }
  const headDim = f.positiveInt('head_dim', headDimDefault);
  if (headDim % 2 !== 0) throw new CheckpointError('bad_config', file, `head_dim (${headDim}) must be even for rotary embeddings`);

  let hiddenAct: 'silu' | 'gelu_tanh' = 'silu';
  if (gemma) {
    // Gemma's modelling code reads hidden_activation; hidden_act is a leftover some configs still carry.
    const act = config.hidden_activation ?? config.hidden_act ?? 'gelu_pytorch_tanh';
    if (act !== 'gelu_pytorch_tanh') throw new CheckpointError('unsupported_config', file, `hidden_activation ${JSON.stringify(act)} is not supported (only gelu_pytorch_tanh)`);
    hiddenAct = 'gelu_tanh';
    if (f.bool('use_bidirectional_attention', false)) throw new CheckpointError('unsupported_config', file, 'use_bidirectional_attention true (an embedding model) is not supported');
  } else {
    const act = config.hidden_act ?? 'silu';
    if (act !== 'silu') throw new CheckpointError('unsupported_config', file, `hidden_act ${JSON.stringify(act)} is not supported (only silu)`);
  }
  if (f.bool('mlp_bias', false)) throw new CheckpointError('unsupported_config', file, 'mlp_bias true is not supported');
  const maxPositionEmbeddings = f.positiveInt('max_position_embeddings', defaults.maxPositionEmbeddings);

  // transformers v5 moves rope_theta and rope_scaling into rope_parameters.
  const ropeParams = isRecord(config.rope_parameters) ? config.rope_parameters : null;
  const ropeFields = ropeParams !== null ? new Fields(ropeParams, file, 'rope_parameters.') : null;
  const ropeTheta = f.has('rope_theta')
    ? f.positiveNumber('rope_theta')
    : ropeFields !== null
      ? ropeFields.positiveNumber('rope_theta', defaults.ropeTheta)
      : defaults.ropeTheta;
  const rotaryDim = parseRotaryDim(architecture, f, ropeFields, headDim, file);
  const ropeContext: RopeContext = {
    rotaryDim,
    maxPositionEmbeddings,
    originalMaxPositionEmbeddings: architecture === 'phi3' ? f.positiveInt('original_max_position_embeddings', 4096) : null,
    allowLongrope: architecture === 'phi3',
  };
  const ropeScaling = config.rope_scaling !== undefined || ropeParams === null
    ? parseRopeScaling(config.rope_scaling, file, 'rope_scaling', ropeContext)
    : parseRopeScaling(ropeParams, file, 'rope_parameters', ropeContext);
  const ropeLayers = architecture === 'smollm3' ? smollm3RopeLayers(f, numLayers) : Array.from({ length: numLayers }, () => true);

  let attentionBias = false;
  let outputBias = false;
  let slidingWindow: number | null = null;
  switch (architecture) {
    case 'llama':
      attentionBias = f.bool('attention_bias', false);
      outputBias = attentionBias;
      break;
    case 'qwen2':
      attentionBias = true;
      slidingWindow = qwen2SlidingWindow(config, f, numLayers, file);
      break;
    case 'mistral':
    case 'mixtral':
    case 'phi3':
      slidingWindow = f.has('sliding_window') ? f.positiveInt('sliding_window') : null;
      break;
    case 'qwen2_moe':
      attentionBias = f.bool('qkv_bias', true);
      slidingWindow = qwen2SlidingWindow(config, f, numLayers, file);
      break;
    case 'qwen3_moe':
      if (f.bool('use_sliding_window', false)) throw new CheckpointError('unsupported_config', file, 'use_sliding_window true is not supported for qwen3_moe');
      attentionBias = f.bool('attention_bias', false);
      outputBias = attentionBias;
      break;
    case 'qwen3':
      attentionBias = f.bool('attention_bias', false);
      outputBias = attentionBias;
      // Qwen3Config drops sliding_window unless use_sliding_window, whatever layer_types says.
      slidingWindow = f.bool('use_sliding_window', false) ? qwen2SlidingWindow(config, f, numLayers, file) : null;
      break;
    case 'gemma2':
    case 'gemma3_text':
      attentionBias = f.bool('attention_bias', false);
      outputBias = attentionBias;
      break;
    case 'smollm3':
      // q/k/v never carry a bias in SmolLM3; o_proj follows attention_bias (Llama's attention).
      outputBias = f.bool('attention_bias', false);
      slidingWindow = smollm3SlidingWindow(f, ropeLayers, file);
      break;
  }
  const moe = parseMoe(architecture, f, numLayers, file);
  const g = gemma ? parseGemma(architecture, config, f, numLayers, ropeContext, file) : null;
  const layerWindows = g?.layerWindows ?? Array.from({ length: numLayers }, () => slidingWindow);
  if (g !== null) {
    const first = layerWindows[0] ?? null;
    slidingWindow = layerWindows.every((w) => w === first) ? first : null;
  }

  let bosTokenId: number | null = f.tokenIds('bos_token_id')?.[0] ?? null;
  let eosTokenIds: number[] = f.tokenIds('eos_token_id') ?? [];
  if (generationConfig !== null && generationConfig !== undefined) {
    if (!isRecord(generationConfig)) throw new CheckpointError('bad_config', file.replace(/config\.json$/, 'generation_config.json'), 'is not a JSON object');
    const g = new Fields(generationConfig, file.replace(/config\.json$/, 'generation_config.json'));
    const genEos = g.tokenIds('eos_token_id');
    if (genEos !== undefined) eosTokenIds = genEos;
    const genBos = g.tokenIds('bos_token_id');
    if (genBos !== undefined) bosTokenId = genBos[0] ?? null;
  }

  return Object.freeze({
    architecture,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: f.positiveInt('intermediate_size', moe?.expertIntermediateSize),
    vocabSize: f.positiveInt('vocab_size'),
    rmsNormEps: f.positiveNumber('rms_norm_eps', defaults.rmsNormEps),
    ropeTheta: g?.fullRope.theta ?? ropeTheta,
    ropeScaling: g !== null ? g.fullRope.scaling : ropeScaling === null ? null : Object.freeze(ropeScaling),
    rotaryDim,
    ropeLayers: Object.freeze(ropeLayers),
    qkNorm: architecture === 'qwen3' || architecture === 'qwen3_moe' || architecture === 'gemma3_text',
    packedProjections: architecture === 'phi3',
    layerWindows: Object.freeze(layerWindows),
    slidingRope: g?.slidingRope ?? null,
    normUnitOffset: gemma,
    embedScale: gemma ? Math.fround(Math.sqrt(hiddenSize)) : 1,
    hiddenAct,
    sandwichNorms: gemma,
    attentionScale: gemma ? f.positiveNumber('query_pre_attn_scalar', 256) ** -0.5 : 1 / Math.sqrt(headDim),
    attnLogitSoftcap: g?.attnLogitSoftcap ?? null,
    finalLogitSoftcap: g?.finalLogitSoftcap ?? null,
    maxPositionEmbeddings,
    tieWordEmbeddings: f.bool('tie_word_embeddings', gemma),
    attentionBias,
    outputBias,
    slidingWindow,
    bosTokenId,
    eosTokenIds: Object.freeze([...new Set(eosTokenIds)]),
    ...(moe !== undefined ? { moe } : {}),
  });
}
