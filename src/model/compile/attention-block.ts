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
 * One graph can hold every variant (variantSwitch): the weight-bearing nodes
 * (q/k/v and o projections, RoPE) are shared and only the weightless attention
 * core differs, so each layer's core sits in an If: the plain core in one
 * branch, and in the other a second If choosing the Quest core or the
 * statistics core. A plain step runs one If per layer and nothing of the
 * others; the weights are loaded (and prepacked) once for all variants.
 *
 * Weight keys (stored by storeAttentionWeights): l{L}.qkv (fused q/k/v rows),
 * l{L}.qkv_bias, l{L}.q_norm, l{L}.k_norm, l{L}.o, l{L}.o_bias.
 */
import { attr, type GraphBuilder } from '../onnx/graph-builder.js';
import type { ModelSpec, WeightSource } from '../spec.js';
import { CAUSAL_BLOCKS_MIN_T, causalBlocksCore } from './causal-blocks.js';
import { decodeCore } from './decode-core.js';
import { questGather, questInputs, type QuestValues } from './quest-gather.js';
import { concatRows, type GraphWeights, type WeightWriter } from './graph-weights.js';
import { layerRope, ropeInGraph } from './rope.js';

/** Per-graph state shared by every layer's block: shapes, RoPE tables, masks, variant inputs. */
export interface AttentionContext {
  readonly g: GraphBuilder;
  readonly spec: ModelSpec;
  readonly weights: Pick<GraphWeights, 'w' | 'linear'>;
  /** RoPE applied on layer l to [B, T, heads * D] (identity on NoPE layers); built once per distinct RoPE. */
  ropeFor(layer: number): (x: string, heads: number) => string;
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
  /**
   * Every variant in one graph: bool [1] values choosing the core per step
   * (`special`: stats or quest; `quest`: quest rather than stats). Null: the
   * graph is the one variant that rowStart / pageSize say.
   */
  readonly variantSwitch: VariantSwitch | null;
  readonly shapes: {
    readonly btKvGD: string;
    readonly btKvD: string;
    readonly btHD: string;
    /** [B, T, heads * D] for the given head count. */
    btFlat(heads: number): string;
    readonly scores5: string;
    readonly ctx5: string;
  };
}

/**
 * Every variant in one graph: bool [1] values choosing the core per step (`special`: stats or
 * quest; `quest`: quest rather than stats; `decode`: a plain step of one new token per row,
 * through the lean decode core of decode-core.ts).
 */
export interface VariantSwitch {
  readonly special: string;
  readonly quest: string;
  readonly decode?: string;
}

/** The graph inputs and outputs of one layer's block. */
export interface AttentionLayerIo {
  readonly pastKey: string;
  readonly pastValue: string;
  readonly pastBias: string;
  readonly presentKey: string;
  readonly presentValue: string;
  /** The past K/V inputs' element type: float16 (a half-size KV cache) is cast to float32 once, before any variant's core. Default float32. */
  readonly pastDtype?: 'float32' | 'float16';
  /** Dimension names of this layer's past length and bias broadcast axes. */
  readonly dims: { readonly past: string; readonly biasHeads: string; readonly biasRows: string };
  /** Stats variant outputs. */
  readonly attnSum?: string;
  readonly attnRows?: string;
  /** The graph switches variants per step: the stats outputs hold placeholders on other steps. */
  readonly statsOnDemand?: boolean;
  /** Quest variant inputs. */
  readonly quest?: { readonly pageMin: string; readonly pageMax: string; readonly pageBias: string; readonly k: string; readonly pages: string };
}

export function attentionContext(
  g: GraphBuilder,
  spec: ModelSpec,
  weights: Pick<GraphWeights, 'w' | 'linear'>,
  inputs: {
    readonly positionIds: string;
    readonly newBias: string;
    readonly attnWindow: string | null;
    readonly pageSize: string | null;
    readonly variantSwitch?: VariantSwitch;
  },
): AttentionContext {
  const H = spec.numHeads;
  const KV = spec.numKvHeads;
  const D = spec.headDim;
  const G = H / KV;
  const bt = g.op('Shape', [inputs.positionIds]);
  const tOnly = g.op('Slice', [bt, g.int64s([1]), g.int64s([2])]);
  const ropes = new Map<'model' | 'sliding', (x: string, heads: number) => string>();
  const identity = (x: string): string => x;
  const windows = new Map<number, string>();
  const flats = new Map<number, string>();
  return {
    g,
    spec,
    weights,
    ropeFor(layer: number): (x: string, heads: number) => string {
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
    variantSwitch: inputs.variantSwitch ?? null,
    shapes: {
      btKvGD: g.op('Concat', [bt, g.int64s([KV, G, D])], { axis: attr.int(0) }),
      btKvD: g.op('Concat', [bt, g.int64s([KV, D])], { axis: attr.int(0) }),
      btHD: g.op('Concat', [bt, g.int64s([H, D])], { axis: attr.int(0) }),
      btFlat: (heads: number): string => {
        let shape = flats.get(heads);
        if (shape === undefined) {
          shape = g.op('Concat', [bt, g.int64s([heads * D])], { axis: attr.int(0) });
          flats.set(heads, shape);
        }
        return shape;
      },
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
  // RoPE works on [B, T, heads * D]; the per-head norms on [B, T, heads, D].
  const q3 = spec.qkNorm
    ? g.op('Reshape', [headNorm(g.op('Reshape', [q, shapes.btHD]), `l${l}.q_norm`), shapes.btFlat(H)])
    : g.op('Reshape', [q, shapes.btFlat(H)]);
  const k3 = spec.qkNorm
    ? g.op('Reshape', [headNorm(g.op('Reshape', [k, shapes.btKvD]), `l${l}.k_norm`), shapes.btFlat(KV)])
    : g.op('Reshape', [k, shapes.btFlat(KV)]);
  const qRot = rope(q3, H);
  const kRot = rope(k3, KV);
  // The new tokens' keys and values head-major [B, KV, T, D] (the present outputs), and the query
  // heads grouped under their KV head [B, KV, G*T, D] so one MatMul serves a whole group; built in
  // builder `b` (the layer's graph, or the general branch of a decode switch, so a decode step runs none of it).
  const newTokenValues = (b: GraphBuilder, names: { readonly k: string; readonly v: string }): Pick<CoreInputs, 'qGrouped' | 'kNew' | 'vNew'> => {
    const headMajor = (x: string, name: string): string => {
      const [out] = b.node('Transpose', [b.op('Reshape', [x, shapes.btKvD])], { perm: attr.ints([0, 2, 1, 3]) }, { outputs: [name] });
      if (out === undefined) throw new Error('unreachable');
      return out;
    };
    return {
      kNew: headMajor(kRot, names.k),
      vNew: headMajor(v, names.v),
      qGrouped: b.op('Reshape', [b.op('Transpose', [b.op('Reshape', [qRot, shapes.btKvGD])], { perm: attr.ints([0, 2, 3, 1, 4]) }), b.int64s([0, 0, -1, D])]),
    };
  };
  const stored: Omit<CoreInputs, 'qGrouped' | 'kNew' | 'vNew'> = {
    pastK: pastInput(g, io, io.pastKey, KV, D),
    pastV: pastInput(g, io, io.pastValue, KV, D),
    pastBias: g.input(io.pastBias, 'float32', ['B', io.dims.biasHeads, io.dims.biasRows, io.dims.past]),
    quest: io.quest === undefined ? null : questInputs(g, io.quest, { KV, D }, ctx.variantSwitch !== null),
  };
  // The engine's masks carry a window shared by every layer; a layer's own window is applied here to the new tokens.
  const ownWindow = spec.slidingWindow === null ? (spec.layerWindows[l] ?? null) : null;
  const windowBias = ownWindow === null ? null : ctx.windowBias(ownWindow);

  const decode = ctx.variantSwitch?.decode;
  if (decode !== undefined) {
    if (io.attnSum === undefined || io.attnRows === undefined) throw new Error('internal: the variant switch needs attn_sum and attn_rows names');
    // Outermost: the lean decode core (the common step) or every variant's general core. With one
    // new token per row, the new key and value are already head-major: a Reshape, no Transpose.
    const none = (b: GraphBuilder, rank: number): string => b.constant('float32', Array<number>(rank).fill(1), new Float32Array(1));
    const lean = g.subgraph(`decode_${l}`);
    const oneToken = lean.int64s([-1, KV, 1, D]);
    const kNew = lean.op('Reshape', [kRot, oneToken]);
    const vNew = lean.op('Reshape', [v, oneToken]);
    const rows = decodeCore(lean, spec, { q: qRot, kNew, vNew, pastK: stored.pastK, pastV: stored.pastV, pastBias: stored.pastBias });
    branchOutputs(lean, [rows, none(lean, 3), none(lean, 5), kNew, vNew]);
    const wide = g.subgraph(`general_${l}`);
    const wideInputs: CoreInputs = { ...stored, ...newTokenValues(wide, { k: `gk_${l}`, v: `gv_${l}` }) };
    const gctx = switchedCore(wide, ctx, l, wideInputs, windowBias, [`gctx_${l}`, `gsum_${l}`, `grows_${l}`]);
    branchOutputs(wide, [mergeHeads(wide, ctx, gctx), `gsum_${l}`, `grows_${l}`, wideInputs.kNew, wideInputs.vNew]);
    const [merged] = g.node(
      'If',
      [decode],
      { then_branch: attr.graph(lean), else_branch: attr.graph(wide) },
      { outputs: [`merged_${l}`, io.attnSum, io.attnRows, io.presentKey, io.presentValue] },
    );
    if (merged === undefined) throw new Error('unreachable');
    return outputProjection(ctx, l, merged);
  }
  const past: CoreInputs = { ...stored, ...newTokenValues(g, { k: io.presentKey, v: io.presentValue }) };
  let ctxV: string;
  if (ctx.variantSwitch === null) {
    const stats = ctx.rowStart === null ? null : { attnSum: io.attnSum, attnRows: io.attnRows };
    if (stats !== null && (stats.attnSum === undefined || stats.attnRows === undefined))
      throw new Error('internal: the stats variant needs attn_sum and attn_rows names');
    ctxV = attentionCore(
      g,
      ctx,
      l,
      past,
      windowBias,
      { stats: stats !== null, quest: ctx.pageSize !== null },
      stats === null ? undefined : { attnSum: io.attnSum ?? '', attnRows: io.attnRows ?? '' },
    ).ctxV;
  } else {
    if (io.attnSum === undefined || io.attnRows === undefined) throw new Error('internal: the variant switch needs attn_sum and attn_rows names');
    ctxV = switchedCore(g, ctx, l, past, windowBias, [`ctx_${l}`, io.attnSum, io.attnRows]);
  }
  return outputProjection(ctx, l, mergeHeads(g, ctx, ctxV));
}

/** [B, KV, G*T, D] attended values -> [B*T, H*D] rows in head order. */
function mergeHeads(b: GraphBuilder, ctx: AttentionContext, ctxV: string): string {
  const { H, D } = { H: ctx.spec.numHeads, D: ctx.spec.headDim };
  return b.op('Reshape', [b.op('Transpose', [b.op('Reshape', [ctxV, ctx.shapes.ctx5])], { perm: attr.ints([0, 3, 1, 2, 4]) }), b.int64s([-1, H * D])]);
}

/** o_proj (and its bias) on the merged rows. */
function outputProjection(ctx: AttentionContext, l: number, merged: string): string {
  const { g, spec } = ctx;
  let o = ctx.weights.linear(merged, `l${l}.o`);
  if (spec.outputBias) o = g.op('Add', [o, ctx.weights.w(`l${l}.o_bias`)]);
  return o;
}

/** Declares a branch's outputs: float32 of each name's rank by position (attended rows, attn_sum, attn_rows, present key, present value). */
function branchOutputs(b: GraphBuilder, names: readonly string[]): void {
  const ranks = [2, 3, 5, 4, 4];
  names.forEach((name, i) => branchOutput(b, name, ranks[i] ?? 4));
}

/**
 * The plain, statistics and Quest cores behind per-step Ifs, built in `parent` (the layer's
 * graph, or the general branch of a decode switch); outputs named `outputs` (ctx, attn_sum,
 * attn_rows). Returns the ctx value [B, KV, G*T, D].
 */
function switchedCore(
  parent: GraphBuilder,
  ctx: AttentionContext,
  l: number,
  past: CoreInputs,
  windowBias: string | null,
  outputs: readonly [string, string, string],
): string {
  const sw = ctx.variantSwitch;
  if (sw === null) throw new Error('internal: no variant switch');
  const branch = (b: GraphBuilder, mode: CoreMode): GraphBuilder => {
    const r = attentionCore(b, ctx, l, past, windowBias, mode);
    // A branch without statistics returns placeholders of the right rank (never fetched).
    const sum = r.attnSum ?? b.op('Identity', [b.constant('float32', [1, 1, 1], new Float32Array(1))]);
    const rows = r.attnRows ?? b.op('Identity', [b.constant('float32', [1, 1, 1, 1, 1], new Float32Array(1))]);
    branchOutput(b, r.ctxV, 4);
    branchOutput(b, sum, 3);
    branchOutput(b, rows, 5);
    return b;
  };
  const special = parent.subgraph(`special_${l}`);
  const inner = special.node(
    'If',
    [sw.quest],
    {
      then_branch: attr.graph(branch(special.subgraph(`quest_${l}`), { stats: false, quest: true })),
      else_branch: attr.graph(branch(special.subgraph(`stats_${l}`), { stats: true, quest: false })),
    },
    { outputs: [`sctx_${l}_${parent.name}`, `ssum_${l}_${parent.name}`, `srows_${l}_${parent.name}`] },
  );
  inner.forEach((name, i) => branchOutput(special, name, [4, 3, 5][i] ?? 4));
  const [attended] = parent.node(
    'If',
    [sw.special],
    {
      then_branch: attr.graph(special),
      else_branch: attr.graph(branch(parent.subgraph(`plain_${l}`), { stats: false, quest: false })),
    },
    { outputs: [...outputs] },
  );
  if (attended === undefined) throw new Error('unreachable');
  return attended;
}

/** A past K or V input as float32 [B, KV, C, D]: the input itself, or its cast from float16. */
function pastInput(g: GraphBuilder, io: AttentionLayerIo, name: string, KV: number, D: number): string {
  const dtype = io.pastDtype ?? 'float32';
  const x = g.input(name, dtype, ['B', KV, io.dims.past, D]);
  return dtype === 'float32' ? x : g.op('Cast', [x], { to: attr.int(1) });
}

interface CoreMode {
  readonly stats: boolean;
  readonly quest: boolean;
}

/** The attention core's inputs, all values of the layer's enclosing graph. */
interface CoreInputs {
  readonly qGrouped: string;
  /** The new tokens' keys and values, [B, KV, T, D] (the present outputs). */
  readonly kNew: string;
  readonly vNew: string;
  readonly pastK: string;
  readonly pastV: string;
  readonly pastBias: string;
  readonly quest: QuestValues | null;
}

/** A subgraph output of float32 and the given rank (dims symbolic: the branches differ in shape). */
function branchOutput(b: GraphBuilder, name: string, rank: number): void {
  b.output(
    name,
    'float32',
    Array.from({ length: rank }, (_, i) => `${name}_d${i}`),
  );
}

/**
 * Scores, softmax and the weighted sum of values, in builder `b` (the layer's
 * graph or an If branch): [B, KV, G*T, D]. With stats, writes attn_sum and
 * attn_rows (named `statsNames`, or fresh names); with quest, attends only the
 * selected pages.
 */
function attentionCore(
  b: GraphBuilder,
  ctx: AttentionContext,
  l: number,
  past: CoreInputs,
  windowBias: string | null,
  mode: CoreMode,
  statsNames?: { readonly attnSum: string; readonly attnRows: string },
  dense = false,
): { ctxV: string; attnSum: string | null; attnRows: string | null } {
  const { spec, shapes } = ctx;
  if (!mode.stats && !mode.quest && !dense) {
    // A plain chunk of CAUSAL_BLOCKS_MIN_T tokens or more skips the masked triangle (causal-blocks.ts).
    const blocks = b.subgraph(`blocks_${l}`);
    const values = { ...past, newBias5: ctx.newBias5, windowBias, tOnly: ctx.tOnly };
    branchOutput(blocks, causalBlocksCore(blocks, spec, values), 4);
    const whole = b.subgraph(`dense_${l}`);
    branchOutput(whole, attentionCore(whole, ctx, l, past, windowBias, mode, undefined, true).ctxV, 4);
    const long = b.op('GreaterOrEqual', [ctx.tOnly, b.int64s([CAUSAL_BLOCKS_MIN_T])]);
    const [ctxV] = b.node('If', [long], { then_branch: attr.graph(blocks), else_branch: attr.graph(whole) }, { outputs: [`pctx_${l}_${b.name}`] });
    if (ctxV === undefined) throw new Error('unreachable');
    return { ctxV, attnSum: null, attnRows: null };
  }
  const KV = spec.numKvHeads;
  const D = spec.headDim;
  const cap = spec.attnLogitSoftcap;
  const scoresT = (q: string, k: string): string => {
    const scores = b.op('FusedMatMul', [q, k], { transA: attr.int(0), transB: attr.int(1), alpha: attr.float(spec.attentionScale) }, 'com.microsoft');
    return cap === null ? scores : b.op('Mul', [b.op('Tanh', [b.op('Mul', [scores, b.scalarF32(1 / cap)])]), b.scalarF32(cap)]);
  };
  const { qGrouped } = past;
  let pk = past.pastK;
  let pv = past.pastV;
  let pb = past.pastBias;
  if (mode.quest) {
    if (past.quest === null || ctx.pageSize === null) throw new Error('internal: the Quest variant needs the quest inputs');
    ({ pk, pv, pb } = questGather(b, l, qGrouped, past, ctx.pageSize, past.quest, { KV, D }));
  }
  const sPastFlat = scoresT(qGrouped, pk); // [B, KV, G*T, C]
  const sPast = b.op('Add', [b.op('Reshape', [sPastFlat, shapes.scores5]), b.op('Unsqueeze', [pb, b.int64s([2])])]);
  const sNewFlat = scoresT(qGrouped, past.kNew); // [B, KV, G*T, T]
  let sNew = b.op('Add', [b.op('Reshape', [sNewFlat, shapes.scores5]), ctx.newBias5]);
  if (windowBias !== null) sNew = b.op('Add', [sNew, windowBias]);
  const probs = b.op('Softmax', [b.op('Concat', [sPast, sNew], { axis: attr.int(-1) })], { axis: attr.int(-1) }); // [B, KV, G, T, C+T]
  let attnSum: string | null = null;
  let attnRows: string | null = null;
  if (mode.stats) {
    if (ctx.rowStart === null) throw new Error('internal: the stats variant needs attn_window');
    attnSum = b.node('ReduceSum', [probs, b.int64s([2, 3])], { keepdims: attr.int(0) }, statsNames ? { outputs: [statsNames.attnSum] } : {})[0] ?? null;
    attnRows =
      b.node('Slice', [probs, ctx.rowStart, b.int64s([2 ** 31 - 1]), b.int64s([3])], {}, statsNames ? { outputs: [statsNames.attnRows] } : {})[0] ?? null;
  }
  const splitSizes = b.op('Concat', [b.op('Shape', [pk], { start: attr.int(2), end: attr.int(3) }), ctx.tOnly], { axis: attr.int(0) });
  const [pPast, pNew] = b.node('Split', [probs, splitSizes], { axis: attr.int(-1) }, { outputs: [`pp_${l}_${b.name}`, `pn_${l}_${b.name}`] });
  if (!pPast || !pNew) throw new Error('unreachable');
  const ctxV = b.op('Add', [
    b.op('MatMul', [b.op('Reshape', [pPast, b.op('Shape', [sPastFlat])]), pv]),
    b.op('MatMul', [b.op('Reshape', [pNew, b.op('Shape', [sNewFlat])]), past.vNew]),
  ]); // [B, KV, G*T, D]
  return { ctxV, attnSum, attnRows };
}

/** The attention block's stats-variant outputs of one layer. */
export function declareAttentionOutputs(g: GraphBuilder, spec: ModelSpec, io: AttentionLayerIo, statsDim: string): void {
  const KV = spec.numKvHeads;
  const D = spec.headDim;
  g.output(io.presentKey, 'float32', ['B', KV, 'T', D]);
  g.output(io.presentValue, 'float32', ['B', KV, 'T', D]);
  if (io.attnSum !== undefined && io.attnRows !== undefined) {
    // Symbolic where a variant switch gives other steps placeholders of another shape.
    const anyShape = io.statsOnDemand === true;
    g.output(io.attnSum, 'float32', anyShape ? [`${statsDim}_b`, `${statsDim}_h`, statsDim] : ['B', KV, statsDim]);
    g.output(
      io.attnRows,
      'float32',
      anyShape ? [`${statsDim}_b`, `${statsDim}_h`, `${statsDim}_g`, 'W', statsDim] : ['B', KV, spec.numHeads / KV, 'W', statsDim],
    );
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
