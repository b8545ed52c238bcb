/**
 * The ONNX graphs of an MoE model. The dense compiler puts every layer in one
 * graph; an MoE model cannot, because which expert weights a layer needs is only
 * known once its router has run. So each layer's non-expert part is one graph,
 * routed experts run in their own calls, and the runner combines them in between.
 *
 * layer-L graph (L = 0 takes input_ids and embeds them; later layers take hidden):
 *   input_ids     int64   [B, T]          (layer 0 only)
 *   hidden        float32 [B*T, h]        (layers > 0) the residual stream
 *   position_ids  int64   [B, T]
 *   new_bias      float32 [B, 1, T, T]      additive mask among the new tokens
 *   past_key / past_value float32 [B, KV, C, D]  head-major, read in place
 *   past_bias     float32 [B, 1|KV, 1|T, C]   additive mask over the past entries
 * (the dense graph's contract, decoder-graph.ts, one layer at a time)
 * outputs:
 *   present_key / present_value [B, KV, T, D]
 *   resid         [B*T, h]   x + attention (+ Qwen2-MoE's gated shared expert)
 *   moe_in        [B*T, h]   post_attention_layernorm(x + attention): the experts' input
 *   router_logits [B*T, E]
 *   next_router_logits [B*T, E]  (all but the last layer) layer L+1's router applied to
 *                 layer L+1's post-attention norm of `resid`: EdgeMoE's prediction of the
 *                 next layer's experts, available before this layer's experts run.
 *
 * Each layer also has a stats and a quest variant (attention-block.ts's options): the
 * same attention statistics outputs and Quest inputs as the dense graph, one layer's worth.
 *
 * head graph: hidden [B*T, h], logit_index [B, K] -> logits [B, K, V].
 *
 * Expert graphs compute y = down(silu(gate(x)) * up(x)) for x [M, h]:
 *   fp32: one graph whose weights are INPUTS (gate_up [2I, h], down [h, I]), so one
 *     session serves every fp32 expert and loading one is only a file read.
 *   int8/int4/int2: a self-contained graph per expert with the codes as constants.
 *     onnxruntime's MatMulNBits accepts non-constant codes, but then dequantizes B
 *     on every call (measured 20x slower than fp32 Gemm on 2048x512); as constants
 *     they are prepacked once at session creation and run faster than fp32.
 */
import { graphWeights, type GraphWeights } from './graph-weights.js';
import { attr, GraphBuilder, type StoredTensor } from '../onnx/graph-builder.js';
import type { ModelSpec } from '../spec.js';
import type { StoredLinear } from './decoder-graph.js';
import type { PackedMatrix } from './moe-quantize.js';
import { attentionBlock, attentionContext, declareAttentionOutputs, type AttentionLayerIo } from './attention-block.js';

export const MOE_IO = {
  inputIds: 'input_ids',
  hidden: 'hidden',
  positionIds: 'position_ids',
  newBias: 'new_bias',
  pastKey: 'past_key',
  pastValue: 'past_value',
  pastBias: 'past_bias',
  presentKey: 'present_key',
  presentValue: 'present_value',
  resid: 'resid',
  moeIn: 'moe_in',
  routerLogits: 'router_logits',
  nextRouterLogits: 'next_router_logits',
  logitIndex: 'logit_index',
  logits: 'logits',
  /** Stats variant: query rows to report; outputs attn_sum [B, KV, C+T], attn_rows [B, KV, G, W, C+T]. */
  attnWindow: 'attn_window',
  attnSum: 'attn_sum',
  attnRows: 'attn_rows',
  /** Quest variant inputs (decoder-graph.ts's, one layer). */
  pageSize: 'page_size',
  pageMin: 'page_min',
  pageMax: 'page_max',
  pageBias: 'page_bias',
  questK: 'quest_k',
  expertX: 'x',
  expertGateUp: 'gate_up',
  expertDown: 'down',
  expertY: 'y',
} as const;

export interface MoeStoredWeights {
  readonly tensors: ReadonlyMap<string, StoredTensor>;
  readonly linears: ReadonlyMap<string, StoredLinear>;
}

interface Ctx extends GraphWeights {
  readonly g: GraphBuilder;
}

function context(name: string, stored: MoeStoredWeights, accuracyLevel: number): Ctx {
  const g = new GraphBuilder(name);
  return { g, ...graphWeights(g, stored.tensors, stored.linears, accuracyLevel) };
}

function swiglu(g: GraphBuilder, gateUp: string, inter: number, tag: string): string {
  const [gate, up] = g.node('Split', [gateUp, g.int64s([inter, inter])], { axis: attr.int(1) }, { outputs: [`gate_${tag}`, `up_${tag}`] });
  if (!gate || !up) throw new Error('unreachable');
  return g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
}

/** Which layer graph: plain, with attention statistics out, or with Quest page selection in (the dense graph's variants). */
export type MoeLayerVariant = 'plain' | 'stats' | 'quest';

export function buildMoeLayerGraph(
  spec: ModelSpec,
  stored: MoeStoredWeights,
  layer: number,
  accuracyLevel: number,
  variant: MoeLayerVariant = 'plain',
): Uint8Array {
  const moe = spec.moe;
  if (moe === undefined) throw new Error('buildMoeLayerGraph: not an MoE spec');
  const { g, w, linear, rows } = context(`capserve-${spec.architecture}-layer${layer}`, stored, accuracyLevel);
  const rmsNorm = (x: string, key: string): string =>
    g.op('SimplifiedLayerNormalization', [x, w(key)], { axis: attr.int(-1), epsilon: attr.float(spec.rmsNormEps) });
  const hidden = spec.hiddenSize;
  const l = layer;

  const positionIds = g.input(MOE_IO.positionIds, 'int64', ['B', 'T']);
  const newBias = g.input(MOE_IO.newBias, 'float32', ['B', 1, 'T', 'T']);
  let x: string;
  if (l === 0) {
    const ids = g.input(MOE_IO.inputIds, 'int64', ['B', 'T']);
    x = rows(ids, 'embed', hidden);
  } else {
    x = g.input(MOE_IO.hidden, 'float32', ['N', hidden]);
  }
  const attnWindow = variant === 'stats' ? g.input(MOE_IO.attnWindow, 'int64', [1]) : null;
  const pageSize = variant === 'quest' ? g.input(MOE_IO.pageSize, 'int64', [1]) : null;
  const actx = attentionContext(g, spec, { w, linear }, { positionIds, newBias, attnWindow, pageSize });
  const io: AttentionLayerIo = {
    pastKey: MOE_IO.pastKey,
    pastValue: MOE_IO.pastValue,
    pastBias: MOE_IO.pastBias,
    presentKey: MOE_IO.presentKey,
    presentValue: MOE_IO.presentValue,
    dims: { past: 'C', biasHeads: 'Hb', biasRows: 'Tb' },
    ...(variant === 'stats' ? { attnSum: MOE_IO.attnSum, attnRows: MOE_IO.attnRows } : {}),
    ...(variant === 'quest' ? { quest: { pageMin: MOE_IO.pageMin, pageMax: MOE_IO.pageMax, pageBias: MOE_IO.pageBias, k: MOE_IO.questK, pages: 'NP' } } : {}),
  };
  const afterAttn = g.op('Add', [x, attentionBlock(actx, l, rmsNorm(x, `l${l}.in_norm`), io)]);

  const moeIn = rmsNorm(afterAttn, `l${l}.post_norm`);
  g.node('Identity', [moeIn], {}, { outputs: [MOE_IO.moeIn] });
  g.node('Gemm', [moeIn, w(`l${l}.router`)], { transB: attr.int(1) }, { outputs: [MOE_IO.routerLogits] });
  let resid = afterAttn;
  if (moe.sharedExpertIntermediateSize !== null) {
    const act = swiglu(g, linear(moeIn, `l${l}.shared_gate_up`), moe.sharedExpertIntermediateSize, 'shared');
    const gate = g.op('Sigmoid', [g.op('Gemm', [moeIn, w(`l${l}.shared_expert_gate`)], { transB: attr.int(1) })]);
    resid = g.op('Add', [afterAttn, g.op('Mul', [gate, linear(act, `l${l}.shared_down`)])]);
  }
  g.node('Identity', [resid], {}, { outputs: [MOE_IO.resid] });
  const last = l === spec.numLayers - 1;
  if (!last) {
    const nextIn = rmsNorm(resid, `l${l + 1}.post_norm`);
    g.node('Gemm', [nextIn, w(`l${l + 1}.router`)], { transB: attr.int(1) }, { outputs: [MOE_IO.nextRouterLogits] });
  }

  declareAttentionOutputs(g, spec, io, 'S');
  g.output(MOE_IO.resid, 'float32', ['N', hidden]);
  g.output(MOE_IO.moeIn, 'float32', ['N', hidden]);
  g.output(MOE_IO.routerLogits, 'float32', ['N', moe.numExperts]);
  if (!last) g.output(MOE_IO.nextRouterLogits, 'float32', ['N', moe.numExperts]);
  return g.toModelBytes(17);
}

export function buildMoeHeadGraph(spec: ModelSpec, stored: MoeStoredWeights, accuracyLevel: number): Uint8Array {
  const { g, w, linear } = context(`capserve-${spec.architecture}-head`, stored, accuracyLevel);
  const hidden = spec.hiddenSize;
  const x = g.input(MOE_IO.hidden, 'float32', ['N', hidden]);
  const logitIndex = g.input(MOE_IO.logitIndex, 'int64', ['B', 'K']);
  const b = g.op('Slice', [g.op('Shape', [logitIndex]), g.int64s([0]), g.int64s([1])]);
  const x3 = g.op('Reshape', [x, g.op('Concat', [b, g.int64s([-1, hidden])], { axis: attr.int(0) })]);
  const idxShape = g.op('Concat', [g.op('Shape', [logitIndex]), g.int64s([hidden])], { axis: attr.int(0) });
  const idx = g.op('Expand', [g.op('Unsqueeze', [logitIndex, g.int64s([-1])]), idxShape]);
  const picked = g.op('Reshape', [g.op('GatherElements', [x3, idx], { axis: attr.int(1) }), g.int64s([-1, hidden])]);
  const normed = g.op('SimplifiedLayerNormalization', [picked, w('final_norm')], { axis: attr.int(-1), epsilon: attr.float(spec.rmsNormEps) });
  const logits2d = linear(normed, 'lm_head');
  const logitShape = g.op('Concat', [g.op('Shape', [logitIndex]), g.int64s([spec.vocabSize])], { axis: attr.int(0) });
  g.node('Reshape', [logits2d, logitShape], {}, { outputs: [MOE_IO.logits] });
  g.output(MOE_IO.logits, 'float32', ['B', 'K', spec.vocabSize]);
  return g.toModelBytes(17);
}

/** One graph for every fp32 expert: the weights are inputs. */
export function buildFp32ExpertGraph(hidden: number, inter: number): Uint8Array {
  const g = new GraphBuilder('capserve-expert-fp32');
  const x = g.input(MOE_IO.expertX, 'float32', ['M', hidden]);
  const gateUp = g.input(MOE_IO.expertGateUp, 'float32', [2 * inter, hidden]);
  const down = g.input(MOE_IO.expertDown, 'float32', [hidden, inter]);
  const act = swiglu(g, g.op('Gemm', [x, gateUp], { transB: attr.int(1) }), inter, 'e');
  g.node('Gemm', [act, down], { transB: attr.int(1) }, { outputs: [MOE_IO.expertY] });
  g.output(MOE_IO.expertY, 'float32', ['M', hidden]);
  return g.toModelBytes(17);
}

/** A self-contained graph for one quantized expert (codes and scales embedded as constants). */
export function buildQuantExpertGraph(gateUp: PackedMatrix, down: PackedMatrix, accuracyLevel: number): Uint8Array {
  const hidden = gateUp.k;
  const inter = down.k;
  const g = new GraphBuilder(`capserve-expert-int${gateUp.bits}`);
  const x = g.input(MOE_IO.expertX, 'float32', ['M', hidden]);
  const nbits = (input: string, m: PackedMatrix, hint: string): string => {
    const blob = (m.blockSize * m.bits) / 8;
    const codes = g.constant('uint8', [m.n, m.blocksPerRow, blob], m.codes, `${hint}_codes`);
    const scales = g.constant('float32', [m.n * m.blocksPerRow], m.scales, `${hint}_scales`);
    return g.op(
      'MatMulNBits',
      [input, codes, scales],
      { K: attr.int(m.k), N: attr.int(m.n), bits: attr.int(m.bits), block_size: attr.int(m.blockSize), accuracy_level: attr.int(accuracyLevel) },
      'com.microsoft',
    );
  };
  const act = swiglu(g, nbits(x, gateUp, 'gate_up'), inter, 'e');
  g.node('Identity', [nbits(act, down, 'down')], {}, { outputs: [MOE_IO.expertY] });
  g.output(MOE_IO.expertY, 'float32', ['M', hidden]);
  return g.toModelBytes(17);
}
