/**
 * Compiles a Llama-family checkpoint (llama, qwen2, mistral) into one ONNX graph
 * that runs every layer in a single session.run: per-layer calls would cost a
 * JS round trip per layer per token, and no policy needs to interpose between
 * layers (eviction acts through the KV inputs and their masks, attention
 * statistics come out as extra outputs of the stats variant).
 *
 * The past KV is read in the KV store's own head-major layout and never copied
 * inside the graph: scores against the past and against the new tokens are
 * computed separately and only the (small) score rows are concatenated.
 *
 * Graph contract (names in GRAPH_IO); every layer has its own past length C_l:
 *   input_ids      int64   [B, T]
 *   position_ids   int64   [B, T]          RoPE positions (policies may renumber)
 *   new_bias       float32 [B, 1, T, T]    additive mask among the new tokens (causal, window)
 *   logit_index    int64   [B, K]          which of the T positions produce logits
 *   past_key_l     float32 [B, KV, C_l, D] post-RoPE keys, head-major
 *   past_value_l   float32 [B, KV, C_l, D]
 *   past_bias_l    float32 [B, 1|KV, 1|T, C_l]  additive mask over the past entries
 *                                          (unused capacity, padding, evictions, window, sparsity)
 *   attn_window    int64   [1]             (stats variant) query rows to report in attn_rows_l
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
import { graphWeights, WeightWriter, type StoredLinear } from './graph-weights.js';
import { ropeInGraph } from './rope.js';

export type WeightDtype = 'fp32' | 'int8' | 'int4';

export interface DecoderGraphOptions {
  readonly weightDtype: WeightDtype;
  /** Adds attention statistics outputs for policies that score by attention. */
  readonly emitAttention: boolean;
  /**
   * Quest page selection inside the graph: per layer and KV head, the top-k pages
   * by the bound sum_c max(q_c min_c, q_c max_c) are gathered and only they are
   * attended (decode steps; the cache stays whole).
   */
  readonly questSelection?: boolean;
  /** MatMulNBits block size along K. */
  readonly quantBlockSize: number;
  /** MatMulNBits accuracy_level: 0 keeps fp32 activations, 4 lets MLAS use int8 activations. */
  readonly quantAccuracyLevel: number;
}

export const GRAPH_IO = {
  inputIds: 'input_ids',
  positionIds: 'position_ids',
  newBias: 'new_bias',
  logitIndex: 'logit_index',
  attnWindow: 'attn_window',
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

function concatRows(parts: readonly Float32Array[]): Float32Array {
  const total = parts.reduce((s, p) => s + p.length, 0);
  const out = new Float32Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Writes every weight the graphs need into `file`, fusing q/k/v and gate/up, quantizing linears if asked. */
export function storeDecoderWeights(
  spec: ModelSpec,
  weights: WeightSource,
  file: ExternalDataFile,
  options: Pick<DecoderGraphOptions, 'weightDtype' | 'quantBlockSize'>,
  onProgress?: (layer: number) => void,
): StoredWeights {
  const out = new WeightWriter(file, options.weightDtype, options.quantBlockSize);
  const putF32 = (key: string, dims: number[], data: Float32Array): void => out.f32(key, dims, data);
  const putLinear = (key: string, data: Float32Array, n: number, k: number): void => out.linear(key, data, n, k);
  const { tensors, linears } = out;

  const h = spec.hiddenSize;
  const qDim = spec.numHeads * spec.headDim;
  const kvDim = spec.numKvHeads * spec.headDim;
  const embed = weights.get('model.embed_tokens.weight');
  putF32('embed', [spec.vocabSize, h], embed.data);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}`;
    putF32(`l${l}.in_norm`, [h], weights.get(`${p}.input_layernorm.weight`).data);
    putF32(`l${l}.post_norm`, [h], weights.get(`${p}.post_attention_layernorm.weight`).data);
    const qkv = concatRows([
      weights.get(`${p}.self_attn.q_proj.weight`).data,
      weights.get(`${p}.self_attn.k_proj.weight`).data,
      weights.get(`${p}.self_attn.v_proj.weight`).data,
    ]);
    putLinear(`l${l}.qkv`, qkv, qDim + 2 * kvDim, h);
    if (spec.attentionBias) {
      const bias = concatRows([
        weights.get(`${p}.self_attn.q_proj.bias`).data,
        weights.get(`${p}.self_attn.k_proj.bias`).data,
        weights.get(`${p}.self_attn.v_proj.bias`).data,
      ]);
      putF32(`l${l}.qkv_bias`, [qDim + 2 * kvDim], bias);
    }
    putLinear(`l${l}.o`, weights.get(`${p}.self_attn.o_proj.weight`).data, h, qDim);
    if (spec.outputBias) putF32(`l${l}.o_bias`, [h], weights.get(`${p}.self_attn.o_proj.bias`).data);
    const gateUp = concatRows([weights.get(`${p}.mlp.gate_proj.weight`).data, weights.get(`${p}.mlp.up_proj.weight`).data]);
    putLinear(`l${l}.gate_up`, gateUp, 2 * spec.intermediateSize, h);
    putLinear(`l${l}.down`, weights.get(`${p}.mlp.down_proj.weight`).data, h, spec.intermediateSize);
    onProgress?.(l);
  }
  putF32('final_norm', [h], weights.get('model.norm.weight').data);
  const head = spec.tieWordEmbeddings ? embed.data : weights.get('lm_head.weight').data;
  if (options.weightDtype === 'fp32' && spec.tieWordEmbeddings) {
    linears.set('lm_head', { kind: 'fp32', weight: 'embed', n: spec.vocabSize, k: h });
  } else {
    putLinear('lm_head', head, spec.vocabSize, h);
  }
  return { tensors, linears, weightDtype: options.weightDtype };
}

/** Builds the decoder graph over stored weights; returns the serialized ModelProto. */
export function buildDecoderGraph(spec: ModelSpec, stored: StoredWeights, options: DecoderGraphOptions): Uint8Array {
  const g = new GraphBuilder(`capserve-${spec.architecture}`);
  const { w, linear } = graphWeights(g, stored.tensors, stored.linears, options.quantAccuracyLevel);
  const rmsNorm = (x: string, key: string): string =>
    g.op('SimplifiedLayerNormalization', [x, w(key)], { axis: attr.int(-1), epsilon: attr.float(spec.rmsNormEps) });

  const H = spec.numHeads;
  const KV = spec.numKvHeads;
  const D = spec.headDim;
  const G = H / KV;
  const hidden = spec.hiddenSize;

  const inputIds = g.input(GRAPH_IO.inputIds, 'int64', ['B', 'T']);
  const positionIds = g.input(GRAPH_IO.positionIds, 'int64', ['B', 'T']);
  const newBias = g.input(GRAPH_IO.newBias, 'float32', ['B', 1, 'T', 'T']);
  const logitIndex = g.input(GRAPH_IO.logitIndex, 'int64', ['B', 'K']);
  const attnWindow = options.emitAttention ? g.input(GRAPH_IO.attnWindow, 'int64', [1]) : null;

  // Shape tensors computed once: [B, T] from the ids.
  const bt = g.op('Shape', [inputIds]);
  const shapeBTkvGD = g.op('Concat', [bt, g.int64s([KV, G, D])], { axis: attr.int(0) });
  const shapeBTkvD = g.op('Concat', [bt, g.int64s([KV, D])], { axis: attr.int(0) });
  const shapeBTHD = g.op('Concat', [bt, g.int64s([H, D])], { axis: attr.int(0) });
  const tOnly = g.op('Slice', [bt, g.int64s([1]), g.int64s([2])]);
  const shapeScores5 = g.op('Concat', [g.int64s([0, 0, G]), tOnly, g.int64s([-1])], { axis: attr.int(0) });
  const shapeQ4 = g.int64s([0, 0, -1, D]);
  const shape2dHidden = g.int64s([-1, hidden]);
  const shape2dHeads = g.int64s([-1, H * D]);
  const shapeCtx5 = g.op('Concat', [g.int64s([0, KV, G]), tOnly, g.int64s([D])], { axis: attr.int(0) });
  const rowStart = attnWindow ? g.op('Neg', [attnWindow]) : null;
  const quest = options.questSelection === true;
  const pageSize = quest ? g.input(GRAPH_IO.pageSize, 'int64', [1]) : null;

  const rope = ropeInGraph(g, spec, positionIds);

  const newBias5 = g.op('Unsqueeze', [newBias, g.int64s([1])]); // [B, 1, 1, T, T]
  const scale = 1 / Math.sqrt(D);
  const scoresT = (q: string, k: string): string =>
    g.op('FusedMatMul', [q, k], { transA: attr.int(0), transB: attr.int(1), alpha: attr.float(scale) }, 'com.microsoft');

  let x = g.op('Reshape', [g.op('Gather', [w('embed'), inputIds], { axis: attr.int(0) }), shape2dHidden]);
  for (let l = 0; l < spec.numLayers; l++) {
    const h = rmsNorm(x, `l${l}.in_norm`);
    let qkv = linear(h, `l${l}.qkv`);
    if (spec.attentionBias) qkv = g.op('Add', [qkv, w(`l${l}.qkv_bias`)]);
    const [q, k, v] = g.node('Split', [qkv, g.int64s([H * D, KV * D, KV * D])], { axis: attr.int(1) }, {
      outputs: [`q_${l}`, `k_${l}`, `v_${l}`],
    });
    if (!q || !k || !v) throw new Error('unreachable');
    const qRot = rope(g.op('Reshape', [q, shapeBTHD]));
    const kNew = GRAPH_IO.presentKey(l);
    const vNew = GRAPH_IO.presentValue(l);
    g.node('Transpose', [rope(g.op('Reshape', [k, shapeBTkvD]))], { perm: attr.ints([0, 2, 1, 3]) }, { outputs: [kNew] }); // [B, KV, T, D]
    g.node('Transpose', [g.op('Reshape', [v, shapeBTkvD])], { perm: attr.ints([0, 2, 1, 3]) }, { outputs: [vNew] });
    const pastK = g.input(GRAPH_IO.pastKey(l), 'float32', ['B', KV, `C${l}`, D]);
    const pastV = g.input(GRAPH_IO.pastValue(l), 'float32', ['B', KV, `C${l}`, D]);
    const pastBias = g.input(GRAPH_IO.pastBias(l), 'float32', ['B', `Hb${l}`, `Tb${l}`, `C${l}`]);
    // Query heads grouped under their KV head: [B, KV, G*T, D] so one MatMul serves a whole group.
    const qGrouped = g.op('Reshape', [
      g.op('Transpose', [g.op('Reshape', [qRot, shapeBTkvGD])], { perm: attr.ints([0, 2, 3, 1, 4]) }),
      shapeQ4,
    ]);
    let pk = pastK;
    let pv = pastV;
    let pb = pastBias;
    if (pageSize) {
      ({ pk, pv, pb } = questGather(g, l, qGrouped, pastK, pastV, pastBias, pageSize, { KV, G, D }));
    }
    const sPastFlat = scoresT(qGrouped, pk); // [B, KV, G*T, C]
    const sPast = g.op('Add', [g.op('Reshape', [sPastFlat, shapeScores5]), g.op('Unsqueeze', [pb, g.int64s([2])])]);
    const sNewFlat = scoresT(qGrouped, kNew); // [B, KV, G*T, T]
    const sNew = g.op('Add', [g.op('Reshape', [sNewFlat, shapeScores5]), newBias5]);
    const probs = g.op('Softmax', [g.op('Concat', [sPast, sNew], { axis: attr.int(-1) })], { axis: attr.int(-1) }); // [B, KV, G, T, C+T]
    if (rowStart) {
      g.node('ReduceSum', [probs, g.int64s([2, 3])], { keepdims: attr.int(0) }, { outputs: [GRAPH_IO.attnSum(l)] });
      g.node('Slice', [probs, rowStart, g.int64s([2 ** 31 - 1]), g.int64s([3])], {}, { outputs: [GRAPH_IO.attnRows(l)] });
    }
    const splitSizes = g.op('Concat', [g.op('Shape', [pk], { start: attr.int(2), end: attr.int(3) }), tOnly], { axis: attr.int(0) });
    const [pPast, pNew] = g.node('Split', [probs, splitSizes], { axis: attr.int(-1) }, { outputs: [`pp_${l}`, `pn_${l}`] });
    if (!pPast || !pNew) throw new Error('unreachable');
    const ctx = g.op('Add', [
      g.op('MatMul', [g.op('Reshape', [pPast, g.op('Shape', [sPastFlat])]), pv]),
      g.op('MatMul', [g.op('Reshape', [pNew, g.op('Shape', [sNewFlat])]), vNew]),
    ]); // [B, KV, G*T, D]
    const merged = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [ctx, shapeCtx5])], { perm: attr.ints([0, 3, 1, 2, 4]) }), shape2dHeads]);
    let o = linear(merged, `l${l}.o`);
    if (spec.outputBias) o = g.op('Add', [o, w(`l${l}.o_bias`)]);
    x = g.op('Add', [x, o]);

    const h2 = rmsNorm(x, `l${l}.post_norm`);
    const gu = linear(h2, `l${l}.gate_up`);
    const [gate, up] = g.node('Split', [gu, g.int64s([spec.intermediateSize, spec.intermediateSize])], { axis: attr.int(1) }, {
      outputs: [`gate_${l}`, `up_${l}`],
    });
    if (!gate || !up) throw new Error('unreachable');
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    x = g.op('Add', [x, linear(act, `l${l}.down`)]);
  }

  // Only the requested positions go through the final norm and the vocabulary projection.
  const x3 = g.op('Reshape', [x, g.op('Concat', [bt, g.int64s([hidden])], { axis: attr.int(0) })]);
  const idxShape = g.op('Concat', [g.op('Shape', [logitIndex]), g.int64s([hidden])], { axis: attr.int(0) });
  const idx = g.op('Expand', [g.op('Unsqueeze', [logitIndex, g.int64s([-1])]), idxShape]);
  const picked = g.op('Reshape', [g.op('GatherElements', [x3, idx], { axis: attr.int(1) }), shape2dHidden]);
  const normed = rmsNorm(picked, 'final_norm');
  const logits2d = linear(normed, 'lm_head');
  const logitShape = g.op('Concat', [g.op('Shape', [logitIndex]), g.int64s([spec.vocabSize])], { axis: attr.int(0) });
  g.node('Reshape', [logits2d, logitShape], {}, { outputs: [GRAPH_IO.logits] });

  g.output(GRAPH_IO.logits, 'float32', ['B', 'K', spec.vocabSize]);
  for (let l = 0; l < spec.numLayers; l++) {
    g.output(GRAPH_IO.presentKey(l), 'float32', ['B', KV, 'T', D]);
    g.output(GRAPH_IO.presentValue(l), 'float32', ['B', KV, 'T', D]);
    if (options.emitAttention) {
      g.output(GRAPH_IO.attnSum(l), 'float32', ['B', KV, `S${l}`]);
      g.output(GRAPH_IO.attnRows(l), 'float32', ['B', KV, G, 'W', `S${l}`]);
    }
  }
  return g.toModelBytes(17);
}

/**
 * Quest's selection for one layer (decode, T = 1): page bounds come in from the
 * KV store ([B, KV, NP, D] per-channel min and max of the page's keys); a KV
 * head scores a page by the largest bound over its group's query heads, plus
 * page_bias (the engine pins the newest page, blocks padding pages); the top
 * quest_k pages' entries are gathered, so attention reads only them.
 */
function questGather(
  g: GraphBuilder,
  l: number,
  qGrouped: string,
  pastK: string,
  pastV: string,
  pastBias: string,
  pageSize: string,
  dims: { KV: number; G: number; D: number },
): { pk: string; pv: string; pb: string } {
  const { KV, G, D } = dims;
  const pageMin = g.input(GRAPH_IO.pageMin(l), 'float32', ['B', KV, `NP${l}`, D]);
  const pageMax = g.input(GRAPH_IO.pageMax(l), 'float32', ['B', KV, `NP${l}`, D]);
  const pageBias = g.input(GRAPH_IO.pageBias(l), 'float32', ['B', KV, `NP${l}`]);
  const k = g.input(GRAPH_IO.questK(l), 'int64', [1]);
  // sum_c max(q_c min_c, q_c max_c) = relu(q) . max + min(q, 0) . min: two matrix products over
  // the page bounds ([B, KV, G*T, D] x [B, KV, NP, D]^T, T = 1), nothing of size pages x channels built.
  const qPos = g.op('Relu', [qGrouped]);
  const qNeg = g.op('Min', [qGrouped, g.scalarF32(0)]);
  const product = (a: string, b: string): string =>
    g.op('FusedMatMul', [a, b], { transA: attr.int(0), transB: attr.int(1), alpha: attr.float(1) }, 'com.microsoft');
  const bound = g.op('Add', [product(qPos, pageMax), product(qNeg, pageMin)]); // [B, KV, G, NP]
  const pageScore = g.op('Add', [g.op('ReduceMax', [bound], { axes: attr.ints([2]), keepdims: attr.int(0) }), pageBias]); // [B, KV, NP]
  const [, pages] = g.node('TopK', [pageScore, k], { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(0) }, {
    outputs: [`qv_${l}`, `qi_${l}`],
  });
  if (!pages) throw new Error('unreachable');
  // Attend the chosen pages in cache order, so summation order matches dense attention.
  const [ascending] = g.node('TopK', [g.op('Cast', [pages], { to: attr.int(1) }), k], { axis: attr.int(-1), largest: attr.int(0), sorted: attr.int(1) }, {
    outputs: [`qs_${l}`, `qsi_${l}`],
  });
  if (!ascending) throw new Error('unreachable');
  const ordered = g.op('Cast', [ascending], { to: attr.int(7) });
  // Pages are whole blocks of the cache (capacity is a multiple of the page size), so one GatherND
  // per tensor copies only the chosen pages, contiguous rows of pageSize x D floats.
  const idx = g.op('Unsqueeze', [ordered, g.int64s([-1])]); // [B, KV, k, 1]
  const paged = (x: string, width: number): string =>
    g.op('Reshape', [x, g.op('Concat', [g.op('Shape', [x], { start: attr.int(0), end: attr.int(2) }), g.int64s([-1]), g.op('Mul', [pageSize, g.int64s([width])])], { axis: attr.int(0) })]);
  const pick = (x: string, width: number): string => g.op('GatherND', [paged(x, width), idx], { batch_dims: attr.int(2) }); // [B, KV, k, ps*width]
  const pk = g.op('Reshape', [pick(pastK, D), g.int64s([0, 0, -1, D])]);
  const pv = g.op('Reshape', [pick(pastV, D), g.int64s([0, 0, -1, D])]);
  const cap = g.op('Shape', [pastK], { start: attr.int(2), end: attr.int(3) });
  const biasFull = g.op('Expand', [pastBias, g.op('Concat', [g.op('Shape', [pastBias], { start: attr.int(0), end: attr.int(1) }), g.int64s([KV, 1]), cap], { axis: attr.int(0) })]);
  const pb = g.op('Reshape', [pick(g.op('Squeeze', [biasFull, g.int64s([2])]), 1), g.int64s([0, 0, 1, -1])]); // [B, KV, 1, k*ps]
  void G;
  return { pk, pv, pb };
}
