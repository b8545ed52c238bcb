/**
 * Hugging Face config.json (+ generation_config.json) -> ModelSpec. Defaults are the
 * ones transformers' config classes apply, so a config that loads in transformers
 * means the same thing here; anything we cannot run faithfully is refused by name.
 */
import { CheckpointError } from './errors.js';
import { Fields, isRecord, type Json } from './hf-config-fields.js';
import {
  parseGemma,
  parseMoe,
  parseRopeScaling,
  parseRotaryDim,
  qwen2SlidingWindow,
  smollm3RopeLayers,
  smollm3SlidingWindow,
  type RopeContext,
} from './hf-config-parts.js';
import { CAUSAL_LM_CLASS, SUPPORTED_ARCHITECTURES, type Architecture, type ModelSpec } from './spec.js';

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

export function parseModelSpec(configJson: unknown, generationConfig: unknown, file: string): ModelSpec {
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
    throw new CheckpointError(
      'bad_config',
      file,
      `hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and head_dim is not given`,
    );
  }
  const headDim = f.positiveInt('head_dim', headDimDefault);
  if (headDim % 2 !== 0) throw new CheckpointError('bad_config', file, `head_dim (${headDim}) must be even for rotary embeddings`);

  let hiddenAct: 'silu' | 'gelu_tanh' = 'silu';
  if (gemma) {
    // Gemma's modelling code reads hidden_activation; hidden_act is a leftover some configs still carry.
    const act = config.hidden_activation ?? config.hidden_act ?? 'gelu_pytorch_tanh';
    if (act !== 'gelu_pytorch_tanh')
      throw new CheckpointError('unsupported_config', file, `hidden_activation ${JSON.stringify(act)} is not supported (only gelu_pytorch_tanh)`);
    hiddenAct = 'gelu_tanh';
    if (f.bool('use_bidirectional_attention', false))
      throw new CheckpointError('unsupported_config', file, 'use_bidirectional_attention true (an embedding model) is not supported');
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
  const ropeScaling =
    config.rope_scaling !== undefined || ropeParams === null
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
