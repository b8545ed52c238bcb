/**
 * Compiles a dense checkpoint (llama, qwen2, mistral, qwen3, smollm3, phi3) into one ONNX graph
 * that runs every layer in a single session.run: per-layer calls would cost a
 * JS round trip per layer per token, and no policy needs to interpose between
 * layers (eviction acts through the KV inputs and their masks, attention
 * statistics come out as extra outputs of the stats variant).
 *
 * The attention block is attention-block.ts, shared with the MoE layer graphs.
 *
 * Graph contract (names in GRAPH_IO); every layer has its own past length C_l:
 *   input_ids      int64   [B, T]
 *   position_ids   int64   [B, T]          RoPE positions (policies may renumber)
 *   new_bias       float32 [B, 1, T, T]    additive mask among the new tokens (causal, window)
 *   logit_index    int64   [B, K]          which of the T positions produce logits
 *   past_key_l     float32 [B, KV, C_l, D] post-RoPE keys, head-major (float16 with kvDtype fp16,
 *   past_value_l   float32 [B, KV, C_l, D]  cast to float32 in the graph before attention)
 *   past_bias_l    float32 [B, 1|KV, 1|T, C_l]  additive mask over the past entries
 *                                          (unused capacity, padding, evictions, window, sparsity)
 *   attn_window    int64   [1]             (stats variant) query rows to report in attn_rows_l
 *   variant        int64   [1]             (all-variant graph) 0 plain, 1 stats, 2 quest, 3 plain decode
 *                                          (one new token per row: the lean core, decode-core.ts)
 *   page_size, page_min_l, page_max_l, page_bias_l, quest_k_l   (quest variant) see attention-block.ts
 * An all-variant graph needs every input on every step (the onnxruntime Node binding feeds
 * only declared inputs, so defaults cannot be overridden): the runner feeds
 * placeholders for the other variants' inputs, which their If branches never read.
 * outputs:
 *   logits         float32 [B, K, V]
 *   present_key_l  float32 [B, KV, T, D]   only the T new entries; the KV store appends them
 *   present_value_l
 *   attn_sum_l     float32 [B, KV, C_l+T]  (stats variant) attention received per entry,
 *                                          summed over the group's query heads and the T queries
 *   attn_rows_l    float32 [B, KV, G, W, C_l+T]  (stats variant) the last W queries' attention rows
 */
import { attr, type ExternalDataFile, GraphBuilder } from '../onnx/graph-builder.js';
import type { ModelSpec, WeightSource } from '../spec.js';
import type { KvDtype } from '../step-io.js';
import {
  attentionBlock,
  attentionContext,
  declareAttentionOutputs,
  normWeight,
  storeAttentionWeights,
  type AttentionLayerIo,
  type VariantSwitch,
} from './attention-block.js';
import { concatRows, graphWeights, WeightWriter, type StoredLinear } from './graph-weights.js';

/** int8/int4: MatMulNBits blocks; w8a8: int8 per channel through the integer GEMM (w8a8.ts). */
export type WeightDtype = 'fp32' | 'int8' | 'int4' | 'w8a8';
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['fp32', 'int8', 'int4', 'w8a8'];

/**
 * Which variants a graph serves: `all` switches per step on the `variant` input
 * (0 plain, 1 stats, 2 quest), so one session holds one copy of the
 * weights for all of them; the others build the one variant alone.
 * - stats: attention statistics outputs for policies that score by attention;
 * - quest: Quest page selection: per layer and KV head, the top-k pages by the
 *   bound sum_c max(q_c min_c, q_c max_c) are gathered and only they are
 *   attended (decode steps; the cache stays whole).
 */
export type DecoderVariants = 'all' | 'plain' | 'stats' | 'quest';

/** The `variant` input's value per variant of an `all` graph. */
export const VARIANT_CODE = { plain: 0, stats: 1, quest: 2, plainDecode: 3 } as const;

export interface DecoderGraphOptions {
  readonly weightDtype: WeightDtype;
  readonly variants: DecoderVariants;
  /** MatMulNBits block size along K. */
  readonly quantBlockSize: number;
  /** MatMulNBits accuracy_level: 0 keeps fp32 activations, 4 lets MLAS use int8 activations. */
  readonly quantAccuracyLevel: number;
  /** The past K/V inputs' element type (the KV cache's storage dtype); default fp32. */
  readonly kvDtype?: KvDtype;
}

export const GRAPH_IO = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  newBias: 'new_bias',
  logitIndex: 'logit_index',
  attnWindow: 'attn_window',
  variant: 'variant',
  logits: 'logits',
  pastKey: (l: number): string => `past_key_${l}`,
  pastValue: (l: number): string => `past_value_${l}`,
  pastBias: (l: number): string => `past_bias_${l}`,
  presentKey: (l: number): string => `present_key_${l}`,
  presentValue: (l: number): string => `present_value_${l}`,
  attnSum: (l: number): string => `attn_sum_${l}`,
  pageMin: (l: number): string => `page_min_${l}`,
  pageMax: (l: number): string => `page_max_${l}`,
  pageBias: (l: number): string => `page_bias_${l}`,
  questK: (l: number): string => `quest_k_${l}`,
  pageSize: 'page_size',
  attnRows: (l: number): string => `attn_rows_${l}`,
} as const;

/** Weights written once to the external file; several graph variants refer to them. */
export interface StoredWeights {
  readonly tensors: Map<string, import('../onnx/graph-builder.js').StoredTensor>;
  readonly linears: Map<string, StoredLinear>;
  readonly weightDtype: WeightDtype;
}

export type { StoredLinear } from './graph-weights.js';

/** Writes every weight the graphs need into `file`, fusing q/k/v and gate/up, quantizing linears if asked. */
export function storeDecoderWeights(
  spec: ModelSpec,
  weights: WeightSource,
  file: ExternalDataFile,
  options: Pick<DecoderGraphOptions, 'weightDtype' | 'quantBlockSize'> & { readonly channelBits?: 7 | 8 },
  onProgress?: (layer: number) => void,
): StoredWeights {
  const out = new WeightWriter(file, options.weightDtype, options.quantBlockSize, options.channelBits);
  const putF32 = (key: string, dims: number[], data: Float32Array): void => out.f32(key, dims, data);
  const putLinear = (key: string, data: Float32Array, n: number, k: number): void => out.linear(key, data, n, k);
  const { tensors, linears } = out;

  const h = spec.hiddenSize;
  const embed = weights.get('model.embed_tokens.weight');
  out.table('embed', embed.data, spec.vocabSize, h);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}`;
    const norm = (name: string): Float32Array => normWeight(spec, weights.get(`${p}.${name}.weight`).data);
    putF32(`l${l}.in_norm`, [h], norm('input_layernorm'));
    if (spec.sandwichNorms) {
      // Gemma: post_attention_layernorm is on the attention output; pre_feedforward_layernorm is the MLP's input norm.
      putF32(`l${l}.attn_out_norm`, [h], norm('post_attention_layernorm'));
      putF32(`l${l}.post_norm`, [h], norm('pre_feedforward_layernorm'));
      putF32(`l${l}.mlp_out_norm`, [h], norm('post_feedforward_layernorm'));
    } else {
      putF32(`l${l}.post_norm`, [h], norm('post_attention_layernorm'));
    }
    storeAttentionWeights(spec, weights, l, out);
    const gateUp = spec.packedProjections
      ? weights.get(`${p}.mlp.gate_up_proj.weight`).data
      : concatRows([weights.get(`${p}.mlp.gate_proj.weight`).data, weights.get(`${p}.mlp.up_proj.weight`).data]);
    putLinear(`l${l}.gate_up`, gateUp, 2 * spec.intermediateSize, h);
    putLinear(`l${l}.down`, weights.get(`${p}.mlp.down_proj.weight`).data, h, spec.intermediateSize);
    onProgress?.(l);
  }
  putF32('final_norm', [h], normWeight(spec, weights.get('model.norm.weight').data));
  const head = spec.tieWordEmbeddings ? embed.data : weights.get('lm_head.weight').data;
  if (options.weightDtype === 'fp32' && spec.tieWordEmbeddings) {
    linears.set('lm_head', { kind: 'fp32', weight: 'embed', n: spec.vocabSize, k: h });
  } else {
    out.linear('lm_head', head, spec.vocabSize, h, true);
  }
  return { tensors, linears, weightDtype: options.weightDtype };
}

/** act(gate): SiLU, or the tanh approximation of GELU (PyTorch's gelu(approximate='tanh')). */
export function gatedActivation(g: GraphBuilder, spec: ModelSpec, gate: string): string {
  if (spec.hiddenAct === 'silu') return g.op('Mul', [gate, g.op('Sigmoid', [gate])]);
  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
  const cube = g.op('Mul', [g.op('Mul', [gate, gate]), gate]);
  const inner = g.op('Mul', [g.op('Add', [gate, g.op('Mul', [cube, g.scalarF32(0.044715)])]), g.scalarF32(Math.sqrt(2 / Math.PI))]);
  return g.op('Mul', [g.op('Mul', [gate, g.scalarF32(0.5)]), g.op('Add', [g.op('Tanh', [inner]), g.scalarF32(1)])]);
}

/** Builds the decoder graph over stored weights; returns the serialized ModelProto. */
export function buildDecoderGraph(spec: ModelSpec, stored: StoredWeights, options: DecoderGraphOptions): Uint8Array {
  const g = new GraphBuilder(`capserve-${spec.architecture}`);
  const { w, linear, rows } = graphWeights(g, stored.tensors, stored.linears, options.quantAccuracyLevel);
  const rmsNorm = (x: string, key: string): string =>
    g.op('SimplifiedLayerNormalization', [x, w(key)], { axis: attr.int(-1), epsilon: attr.float(spec.rmsNormEps) });

  const hidden = spec.hiddenSize;

  const inputIds = g.input(GRAPH_IO.inputIds, 'int64', ['B', 'T']);
  const positionIds = g.input(GRAPH_IO.positionIds, 'int64', ['B', 'T']);
  const newBias = g.input(GRAPH_IO.newBias, 'float32', ['B', 1, 'T', 'T']);
  const logitIndex = g.input(GRAPH_IO.logitIndex, 'int64', ['B', 'K']);
  const all = options.variants === 'all';
  const stats = all || options.variants === 'stats';
  const quest = all || options.variants === 'quest';
  const attnWindow = stats ? g.input(GRAPH_IO.attnWindow, 'int64', [1]) : null;
  const pageSize = quest ? g.input(GRAPH_IO.pageSize, 'int64', [1]) : null;
  let variantSwitch: VariantSwitch | undefined;
  if (all) {
    const variant = g.input(GRAPH_IO.variant, 'int64', [1]);
    variantSwitch = {
      special: g.op('Greater', [variant, g.int64s([VARIANT_CODE.plain])]),
      quest: g.op('Equal', [variant, g.int64s([VARIANT_CODE.quest])]),
      decode: g.op('Equal', [variant, g.int64s([VARIANT_CODE.plainDecode])]),
    };
  }
  const actx = attentionContext(g, spec, { w, linear }, { positionIds, newBias, attnWindow, pageSize, ...(variantSwitch ? { variantSwitch } : {}) });
  const bt = actx.bt;
  const shape2dHidden = g.int64s([-1, hidden]);
  const layerIo = (l: number): AttentionLayerIo => ({
    pastKey: GRAPH_IO.pastKey(l),
    pastValue: GRAPH_IO.pastValue(l),
    pastBias: GRAPH_IO.pastBias(l),
    presentKey: GRAPH_IO.presentKey(l),
    presentValue: GRAPH_IO.presentValue(l),
    dims: { past: `C${l}`, biasHeads: `Hb${l}`, biasRows: `Tb${l}` },
    ...(options.kvDtype === 'fp16' ? { pastDtype: 'float16' as const } : {}),
    ...(stats ? { attnSum: GRAPH_IO.attnSum(l), attnRows: GRAPH_IO.attnRows(l), statsOnDemand: all } : {}),
    ...(pageSize !== null
      ? { quest: { pageMin: GRAPH_IO.pageMin(l), pageMax: GRAPH_IO.pageMax(l), pageBias: GRAPH_IO.pageBias(l), k: GRAPH_IO.questK(l), pages: `NP${l}` } }
      : {}),
  });

  let x = rows(inputIds, 'embed', hidden);
  if (spec.embedScale !== 1) x = g.op('Mul', [x, g.scalarF32(spec.embedScale)]);
  // The residual stream: `x` plus a branch output not yet added. The add is fused into the next
  // RMSNorm (SkipSimplifiedLayerNormalization returns the norm and the sum), one node instead of two.
  let pending: string | null = null;
  const normResidual = (key: string, l: number, which: string): string => {
    if (pending === null) return rmsNorm(x, key);
    const [normed, , , sum] = g.node(
      'SkipSimplifiedLayerNormalization',
      [x, pending, w(key)],
      { epsilon: attr.float(spec.rmsNormEps) },
      {
        domain: 'com.microsoft',
        outputs: [`${which}_norm_${l}`, '', '', `${which}_sum_${l}`],
      },
    );
    if (normed === undefined || sum === undefined) throw new Error('unreachable');
    x = sum;
    pending = null;
    return normed;
  };
  for (let l = 0; l < spec.numLayers; l++) {
    let o = attentionBlock(actx, l, normResidual(`l${l}.in_norm`, l, 'in'), layerIo(l));
    if (spec.sandwichNorms) o = rmsNorm(o, `l${l}.attn_out_norm`);
    pending = o;

    const h2 = normResidual(`l${l}.post_norm`, l, 'post');
    const gu = linear(h2, `l${l}.gate_up`);
    const [gate, up] = g.node(
      'Split',
      [gu, g.int64s([spec.intermediateSize, spec.intermediateSize])],
      { axis: attr.int(1) },
      {
        outputs: [`gate_${l}`, `up_${l}`],
      },
    );
    if (!gate || !up) throw new Error('unreachable');
    const act = g.op('Mul', [gatedActivation(g, spec, gate), up]);
    let m = linear(act, `l${l}.down`);
    if (spec.sandwichNorms) m = rmsNorm(m, `l${l}.mlp_out_norm`);
    pending = m;
  }
  if (pending !== null) x = g.op('Add', [x, pending]);

  // Only the requested positions go through the final norm and the vocabulary projection.
  const x3 = g.op('Reshape', [x, g.op('Concat', [bt, g.int64s([hidden])], { axis: attr.int(0) })]);
  const idxShape = g.op('Concat', [g.op('Shape', [logitIndex]), g.int64s([hidden])], { axis: attr.int(0) });
  const idx = g.op('Expand', [g.op('Unsqueeze', [logitIndex, g.int64s([-1])]), idxShape]);
  const picked = g.op('Reshape', [g.op('GatherElements', [x3, idx], { axis: attr.int(1) }), shape2dHidden]);
  const normed = rmsNorm(picked, 'final_norm');
  let logits2d = linear(normed, 'lm_head');
  const cap = spec.finalLogitSoftcap;
  if (cap !== null) logits2d = g.op('Mul', [g.op('Tanh', [g.op('Mul', [logits2d, g.scalarF32(1 / cap)])]), g.scalarF32(cap)]);
  const logitShape = g.op('Concat', [g.op('Shape', [logitIndex]), g.int64s([spec.vocabSize])], { axis: attr.int(0) });
  g.node('Reshape', [logits2d, logitShape], {}, { outputs: [GRAPH_IO.logits] });

  g.output(GRAPH_IO.logits, 'float32', ['B', 'K', spec.vocabSize]);
  for (let l = 0; l < spec.numLayers; l++) declareAttentionOutputs(g, spec, layerIo(l), `S${l}`);
  return g.toModelBytes(17);
}
