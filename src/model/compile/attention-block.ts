/**
 * The attention block, written once for the dense decoder graph (decoder-graph.ts)
 * and the MoE layer graphs (moe-graphs.ts): the architecture's options (q/k
 * biases, per-head q/k RMSNorm, partial or absent RoPE per layer) and the
 * policies' options (attention statistics out, Quest page selection in) are
 * parameters of this one builder, so every model gets every variant.
 *
 * The past KV is read in the KV store's own head-major layout and never copied
 * inside the graph: scores against the past and against the new tokens are
 * computed separately and only the (small) score rows are concatenated.
 *
 * Weight keys (stored by storeAttentionWeights): l{L}.qkv (fused q/k/v rows),
 * l{L}.qkv_bias, l{L}.q_norm, l{L}.k_norm, l{L}.o, l{L}.o_bias.
 */
import { attr, type GraphBuilder } from '../onnx/graph-builder.js';
import type { ModelSpec, WeightSource } from '../spec.js';
import { concatRows, type GraphWeights, type WeightWriter } from './graph-weights.js';
import { layerRope, ropeInGraph } from './rope.js';

/** Per-graph state shared by every layer's block: shapes, RoPE tables, masks, variant inputs. */
export interface AttentionContext {
  readonly g: GraphBuilder;
  readonly spec: ModelSpec;
  readonly weights: GraphWeights;
  /** RoPE applied on layer l (identity on NoPE layers); built once per distinct RoPE. */
  ropeFor(layer: number): (x: string) => string;
  /**
   * [B, 1, 1, T, T] bias blocking new keys older than `window` for each new query
   * (by position_ids), for layers whose window differs from new_bias's; built once per window.
   */
  windowBias(window: number): string;
  readonly bt: string;
  readonly tOnly: string;
  readonly newBias5: string;
  /** Stats variant: -attn_window, the first query row reported in attn_rows. */
  readonly rowStart: string | null;
  /** Quest variant: the page size input. */
  readonly pageSize: string | null;
  readonly shapes: {
    readonly btKvGD: string;
    readonly btKvD: string;
    readonly btHD: string;
    readonly scores5: string;
    readonly ctx5: string;
  };
}

/** The graph inputs and outputs of one layer's block. */
export interface AttentionLayerIo {
  readonly pastKey: string;
  readonly pastValue: string;
  readonly pastBias: string;
  readonly presentKey: string;
  readonly presentValue: string;
  /** Dimension names of this layer's past length and bias broadcast axes. */
  readonly dims: { readonly past: string; readonly biasHeads: string; readonly biasRows: string };
  /** Stats variant outputs. */
  readonly attnSum?: string;
  readonly attnRows?: string;
  /** Quest variant inputs. */
  readonly quest?: { readonly pageMin: string; readonly pageMax: string; readonly pageBias: string; readonly k: string; readonly pages: string };
}

export function attentionContext(
  g: GraphBuilder,
  spec: ModelSpec,
  weights: GraphWeights,
  inputs: { readonly positionIds: string; readonly newBias: string; readonly attnWindow: string | null; readonly pageSize: string | null },
): AttentionContext {
  const H = spec.numHeads;
  const KV = spec.numKvHeads;
  const D = spec.headDim;
  const G = H / KV;
  const bt = g.op('Shape', [inputs.positionIds]);
  const tOnly = g.op('Slice', [bt, g.int64s([1]), g.int64s([2])]);
  const ropes = new Map<'model' | 'sliding', (x: string) => string>();
  const identity = (x: string): string => x;
  const windows = new Map<number, string>();
  return {
    g,
    spec,
    weights,
    ropeFor(layer: number): (x: string) => string {
      const params = layerRope(spec, layer);
      if (params === null) return identity;
      const key = params === spec.slidingRope ? 'sliding' : 'model';
      let rope = ropes.get(key);
      if (rope === undefined) {
        rope = ropeInGraph(g, spec, inputs.positionIds, params);
        ropes.set(key, rope);
      }
      return rope;
    },
    windowBias(window: number): string {
      let bias = windows.get(window);
      if (bias === undefined) {
        const pos = g.op('Cast', [inputs.positionIds], { to: attr.int(1) }); // [B, T]
        const age = g.op('Sub', [g.op('Unsqueeze', [pos, g.int64s([2])]), g.op('Unsqueeze', [pos, g.int64s([1])])]); // [B, Tq, Tk]
        // A large finite value, not -inf: a padding query whose every key is out of window must not produce NaN.
        const blocked = g.op('Where', [g.op('GreaterOrEqual', [age, g.scalarF32(window)]), g.scalarF32(-1e30), g.scalarF32(0)]);
        bias = g.op('Unsqueeze', [blocked, g.int64s([1, 2])]);
        windows.set(window, bias);
      }
      return bias;
    },
    bt,
    tOnly,
    newBias5: g.op('Unsqueeze', [inputs.newBias, g.int64s([1])]), // [B, 1, 1, T, T]
    rowStart: inputs.attnWindow === null ? null : g.op('Neg', [inputs.attnWindow]),
    pageSize: inputs.pageSize,
    shapes: {
      btKvGD: g.op('Concat', [bt, g.int64s([KV, G, D])], { axis: attr.int(0) }),
      btKvD: g.op('Concat', [bt, g.int64s([KV, D])], { axis: attr.int(0) }),
      btHD: g.op('Concat', [bt, g.int64s([H, D])], { axis: attr.int(0) }),
      scores5: g.op('Concat', [g.int64s([0, 0, G]), tOnly, g.int64s([-1])], { axis: attr.int(0) }),
      ctx5: g.op('Concat', [g.int64s([0, KV, G]), tOnly, g.int64s([D])], { axis: attr.int(0) }),
    },
  };
}

/**
 * One layer's attention on h [B*T, hidden] (already input-normed); declares the
 * layer's KV inputs and present outputs as `io` names them; returns o_proj's output [B*T, hidden].
 */
export function attentionBlock(ctx: AttentionContext, layer: number, h: string, io: AttentionLayerIo): string {
  const { g, spec, shapes } = ctx;
  const { w, linear } = ctx.weights;
  const l = layer;
  const H = spec.numHeads;
  const KV = spec.numKvHeads;
  const D = spec.headDim;
  const headNorm = (x: string, key: string): string =>
    g.op('SimplifiedLayerNormalization', [x, w(key)], { axis: attr.int(-1), epsilon: attr.float(spec.rmsNormEps) });
  const rope = ctx.ropeFor(l);
  const cap = spec.attnLogitSoftcap;
  const scoresT = (q: string, k: string): string => {
    const scores = g.op('FusedMatMul', [q, k], { transA: attr.int(0), transB: attr.int(1), alpha: attr.float(spec.attentionScale) }, 'com.microsoft');
    return cap === null ? scores : g.op('Mul', [g.op('Tanh', [g.op('Mul', [scores, g.scalarF32(1 / cap)])]), g.scalarF32(cap)]);
  };
  // The engine's masks carry a window shared by every layer; a layer's own window is applied here to the new tokens.
  const ownWindow = spec.slidingWindow === null ? (spec.layerWindows[l] ?? null) : null;

  let qkv = linear(h, `l${l}.qkv`);
  if (spec.attentionBias) qkv = g.op('Add', [qkv, w(`l${l}.qkv_bias`)]);
  const [q, k, v] = g.node(
    'Split',
    [qkv, g.int64s([H * D, KV * D, KV * D])],
    { axis: attr.int(1) },
    {
      outputs: [`q_${l}`, `k_${l}`, `v_${l}`],
    },
  );
  if (!q || !k || !v) throw new Error('unreachable');
  let q4 = g.op('Reshape', [q, shapes.btHD]);
  let k4 = g.op('Reshape', [k, shapes.btKvD]);
  if (spec.qkNorm) {
    q4 = headNorm(q4, `l${l}.q_norm`);
    k4 = headNorm(k4, `l${l}.k_norm`);
  }
  const qRot = rope(q4);
  const kNew = io.presentKey;
  const vNew = io.presentValue;
  g.node('Transpose', [rope(k4)], { perm: attr.ints([0, 2, 1, 3]) }, { outputs: [kNew] }); // [B, KV, T, D]
  g.node('Transpose', [g.op('Reshape', [v, shapes.btKvD])], { perm: attr.ints([0, 2, 1, 3]) }, { outputs: [vNew] });
  const pastK = g.input(io.pastKey, 'float32', ['B', KV, io.dims.past, D]);
  const pastV = g.input(io.pastValue, 'float32', ['B', KV, io.dims.past, D]);
  const pastBias = g.input(io.pastBias, 'float32', ['B', io.dims.biasHeads, io.dims.biasRows, io.dims.past]);
  // Query heads grouped under their KV head: [B, KV, G*T, D] so one MatMul serves a whole group.
  const qGrouped = g.op('Reshape', [
    g.op('Transpose', [g.op('Reshape', [qRot, shapes.btKvGD])], { perm: attr.ints([0, 2, 3, 1, 4]) }),
    g.int64s([0, 0, -1, D]),
  ]);
  let pk = pastK;
  let pv = pastV;
  let pb = pastBias;
  if (ctx.pageSize !== null) {
    if (io.quest === undefined) throw new Error('internal: the Quest variant needs the quest inputs');
    ({ pk, pv, pb } = questGather(g, l, qGrouped, pastK, pastV, pastBias, ctx.pageSize, io.quest, { KV, D }));
  }
  const sPastFlat = scoresT(qGrouped, pk); // [B, KV, G*T, C]
  const sPast = g.op('Add', [g.op('Reshape', [sPastFlat, shapes.scores5]), g.op('Unsqueeze', [pb, g.int64s([2])])]);
  const sNewFlat = scoresT(qGrouped, kNew); // [B, KV, G*T, T]
  let sNew = g.op('Add', [g.op('Reshape', [sNewFlat, shapes.scores5]), ctx.newBias5]);
  if (ownWindow !== null) sNew = g.op('Add', [sNew, ctx.windowBias(ownWindow)]);
  const probs = g.op('Softmax', [g.op('Concat', [sPast, sNew], { axis: attr.int(-1) })], { axis: attr.int(-1) }); // [B, KV, G, T, C+T]
  if (ctx.rowStart !== null) {
    if (io.attnSum === undefined || io.attnRows === undefined) throw new Error('internal: the stats variant needs attn_sum and attn_rows names');
    g.node('ReduceSum', [probs, g.int64s([2, 3])], { keepdims: attr.int(0) }, { outputs: [io.attnSum] });
    g.node('Slice', [probs, ctx.rowStart, g.int64s([2 ** 31 - 1]), g.int64s([3])], {}, { outputs: [io.attnRows] });
  }
  const splitSizes = g.op('Concat', [g.op('Shape', [pk], { start: attr.int(2), end: attr.int(3) }), ctx.tOnly], { axis: attr.int(0) });
  const [pPast, pNew] = g.node('Split', [probs, splitSizes], { axis: attr.int(-1) }, { outputs: [`pp_${l}`, `pn_${l}`] });
  if (!pPast || !pNew) throw new Error('unreachable');
  const ctxV = g.op('Add', [
    g.op('MatMul', [g.op('Reshape', [pPast, g.op('Shape', [sPastFlat])]), pv]),
    g.op('MatMul', [g.op('Reshape', [pNew, g.op('Shape', [sNewFlat])]), vNew]),
  ]); // [B, KV, G*T, D]
  const merged = g.op('Reshape', [g.op('Transpose', [g.op('Reshape', [ctxV, shapes.ctx5])], { perm: attr.ints([0, 3, 1, 2, 4]) }), g.int64s([-1, H * D])]);
  let o = linear(merged, `l${l}.o`);
  if (spec.outputBias) o = g.op('Add', [o, w(`l${l}.o_bias`)]);
  return o;
}

/** The attention block's stats-variant outputs of one layer. */
export function declareAttentionOutputs(g: GraphBuilder, spec: ModelSpec, io: AttentionLayerIo, statsDim: string): void {
  const KV = spec.numKvHeads;
  const D = spec.headDim;
  g.output(io.presentKey, 'float32', ['B', KV, 'T', D]);
  g.output(io.presentValue, 'float32', ['B', KV, 'T', D]);
  if (io.attnSum !== undefined && io.attnRows !== undefined) {
    g.output(io.attnSum, 'float32', ['B', KV, statsDim]);
    g.output(io.attnRows, 'float32', ['B', KV, spec.numHeads / KV, 'W', statsDim]);
  }
}

/** An RMSNorm weight as the graph multiplies by it: Gemma's float32(1 + w), w elsewhere. */
export function normWeight(spec: ModelSpec, w: Float32Array): Float32Array {
  return spec.normUnitOffset ? w.map((v) => v + 1) : w;
}

/** Stores one layer's attention weights under the keys attentionBlock reads, from either checkpoint layout. */
export function storeAttentionWeights(spec: ModelSpec, weights: WeightSource, layer: number, out: WeightWriter): void {
  const l = layer;
  const p = `model.layers.${l}`;
  const h = spec.hiddenSize;
  const qDim = spec.numHeads * spec.headDim;
  const kvDim = spec.numKvHeads * spec.headDim;
  const qkv = spec.packedProjections
    ? weights.get(`${p}.self_attn.qkv_proj.weight`).data
    : concatRows(['q', 'k', 'v'].map((x) => weights.get(`${p}.self_attn.${x}_proj.weight`).data));
  out.linear(`l${l}.qkv`, qkv, qDim + 2 * kvDim, h);
  if (spec.attentionBias) {
    out.f32(`l${l}.qkv_bias`, [qDim + 2 * kvDim], concatRows(['q', 'k', 'v'].map((x) => weights.get(`${p}.self_attn.${x}_proj.bias`).data)));
  }
  if (spec.qkNorm) {
    out.f32(`l${l}.q_norm`, [spec.headDim], normWeight(spec, weights.get(`${p}.self_attn.q_norm.weight`).data));
    out.f32(`l${l}.k_norm`, [spec.headDim], normWeight(spec, weights.get(`${p}.self_attn.k_norm.weight`).data));
  }
  out.linear(`l${l}.o`, weights.get(`${p}.self_attn.o_proj.weight`).data, h, qDim);
  if (spec.outputBias) out.f32(`l${l}.o_bias`, [h], weights.get(`${p}.self_attn.o_proj.bias`).data);
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
  names: NonNullable<AttentionLayerIo['quest']>,
  dims: { KV: number; D: number },
): { pk: string; pv: string; pb: string } {
  const { KV, D } = dims;
  const pageMin = g.input(names.pageMin, 'float32', ['B', KV, names.pages, D]);
  const pageMax = g.input(names.pageMax, 'float32', ['B', KV, names.pages, D]);
  const pageBias = g.input(names.pageBias, 'float32', ['B', KV, names.pages]);
  const k = g.input(names.k, 'int64', [1]);
  // sum_c max(q_c min_c, q_c max_c) = relu(q) . max + min(q, 0) . min: two matrix products over
  // the page bounds ([B, KV, G*T, D] x [B, KV, NP, D]^T, T = 1), nothing of size pages x channels built.
  const qPos = g.op('Relu', [qGrouped]);
  const qNeg = g.op('Min', [qGrouped, g.scalarF32(0)]);
  const product = (a: string, b: string): string =>
    g.op('FusedMatMul', [a, b], { transA: attr.int(0), transB: attr.int(1), alpha: attr.float(1) }, 'com.microsoft');
  const bound = g.op('Add', [product(qPos, pageMax), product(qNeg, pageMin)]); // [B, KV, G, NP]
  const pageScore = g.op('Add', [g.op('ReduceMax', [bound], { axes: attr.ints([2]), keepdims: attr.int(0) }), pageBias]); // [B, KV, NP]
  const [, pages] = g.node(
    'TopK',
    [pageScore, k],
    { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(0) },
    {
      outputs: [`qv_${l}`, `qi_${l}`],
    },
  );
  if (!pages) throw new Error('unreachable');
  // Attend the chosen pages in cache order, so summation order matches dense attention.
  const [ascending] = g.node(
    'TopK',
    [g.op('Cast', [pages], { to: attr.int(1) }), k],
    { axis: attr.int(-1), largest: attr.int(0), sorted: attr.int(1) },
    {
      outputs: [`qs_${l}`, `qsi_${l}`],
    },
  );
  if (!ascending) throw new Error('unreachable');
  const ordered = g.op('Cast', [ascending], { to: attr.int(7) });
  // Pages are whole blocks of the cache (capacity is a multiple of the page size), so one GatherND
  // per tensor copies only the chosen pages, contiguous rows of pageSize x D floats.
  const idx = g.op('Unsqueeze', [ordered, g.int64s([-1])]); // [B, KV, k, 1]
  const paged = (x: string, width: number): string =>
    g.op('Reshape', [
      x,
      g.op('Concat', [g.op('Shape', [x], { start: attr.int(0), end: attr.int(2) }), g.int64s([-1]), g.op('Mul', [pageSize, g.int64s([width])])], {
        axis: attr.int(0),
      }),
    ]);
  const pick = (x: string, width: number): string => g.op('GatherND', [paged(x, width), idx], { batch_dims: attr.int(2) }); // [B, KV, k, ps*width]
  const pk = g.op('Reshape', [pick(pastK, D), g.int64s([0, 0, -1, D])]);
  const pv = g.op('Reshape', [pick(pastV, D), g.int64s([0, 0, -1, D])]);
  const cap = g.op('Shape', [pastK], { start: attr.int(2), end: attr.int(3) });
  const biasFull = g.op('Expand', [
    pastBias,
    g.op('Concat', [g.op('Shape', [pastBias], { start: attr.int(0), end: attr.int(1) }), g.int64s([KV, 1]), cap], { axis: attr.int(0) }),
  ]);
  const pb = g.op('Reshape', [pick(g.op('Squeeze', [biasFull, g.int64s([2])]), 1), g.int64s([0, 0, 1, -1])]); // [B, KV, 1, k*ps]
  return { pk, pv, pb };
}
