/**
 * The ONNX graphs of a dense model run with elastic weights (STI): one graph per
 * layer whose four shardable matrices are INPUTS, so the runner can feed a layer
 * whatever its shards assemble to (fp32 as stored, or dequantized from 8/4/2
 * bits) and one session per layer serves every plan; the small, always-resident
 * weights (embeddings, norms, biases, lm_head) are initializers in weights.bin.
 *
 * layer-L graph: the MoE layer graph's contract (moe-graphs.ts: input_ids at
 * layer 0, else hidden [B*T, h]; position_ids, new_bias, past_key/value/bias;
 * present_key/value out; stats and quest variants), plus
 *   w_qkv     float32 [(H+2KV)D, h]   fused q/k/v rows
 *   w_o       float32 [h, HD]
 *   w_gate_up float32 [2I, h]
 *   w_down    float32 [h, I]
 * and the output hidden_out [B*T, h] (the residual stream after the layer).
 * The ops are the dense decoder graph's (decoder-graph.ts: attentionBlock, the
 * same Gemm/Split/activation), so fp32 shards compute what the dense graph does,
 * bit for bit (see the padding note in layerWeights).
 *
 * head graph: the dense graph's tail (final norm, lm_head, softcap) on the
 * positions logit_index picks.
 */
import { attr, GraphBuilder } from '../onnx/graph-builder.js';
import type { ModelSpec } from '../spec.js';
import { attentionBlock, attentionContext, declareAttentionOutputs, type AttentionLayerIo } from './attention-block.js';
import { gatedActivation } from './decoder-graph.js';
import { graphWeights, type GraphWeights } from './graph-weights.js';
import { MOE_IO, type MoeLayerVariant, type MoeStoredWeights } from './moe-graphs.js';

export const STI_IO = {
  ...MOE_IO,
  wQkv: 'w_qkv',
  wO: 'w_o',
  wGateUp: 'w_gate_up',
  wDown: 'w_down',
  hiddenOut: 'hidden_out',
} as const;

/** The resident weights' graph side, with this layer's shardable linears read from graph inputs. */
function layerWeights(g: GraphBuilder, spec: ModelSpec, stored: MoeStoredWeights, layer: number): GraphWeights {
  const base = graphWeights(g, stored.tensors, stored.linears, 0);
  const D = spec.headDim;
  const h = spec.hiddenSize;
  const I = spec.intermediateSize;
  const inputs: Record<string, string> = {
    [`l${layer}.qkv`]: g.input(STI_IO.wQkv, 'float32', [(spec.numHeads + 2 * spec.numKvHeads) * D, h]),
    [`l${layer}.o`]: g.input(STI_IO.wO, 'float32', [h, spec.numHeads * D]),
    [`l${layer}.gate_up`]: g.input(STI_IO.wGateUp, 'float32', [2 * I, h]),
    [`l${layer}.down`]: g.input(STI_IO.wDown, 'float32', [h, I]),
  };
  const widths: Record<string, number> = { [`l${layer}.qkv`]: h, [`l${layer}.o`]: spec.numHeads * D, [`l${layer}.gate_up`]: h, [`l${layer}.down`]: I };
  return {
    w: base.w,
    rows: base.rows,
    linear: (x, key) => {
      const input = inputs[key];
      if (input === undefined) return base.linear(x, key);
      // onnxruntime computes a one-row Gemm against a constant (prepacked) B exactly as a
      // two-row Gemm against an input B, and differently (by an ulp) from a one-row one:
      // one zero row appended keeps fp32 shards bit-identical to the dense graph in decode.
      const k = widths[key] ?? 0;
      const padded = g.op('Concat', [x, g.constant('float32', [1, k], new Float32Array(k), 'zero_row')], { axis: attr.int(0) });
      const y = g.op('Gemm', [padded, input], { transB: attr.int(1) });
      return g.op('Slice', [y, g.int64s([0]), g.op('Shape', [x], { start: attr.int(0), end: attr.int(1) }), g.int64s([0])]);
    },
  };
}

export function buildStiLayerGraph(spec: ModelSpec, stored: MoeStoredWeights, layer: number, variant: MoeLayerVariant): Uint8Array {
  const g = new GraphBuilder(`capserve-sti-${spec.architecture}-layer${layer}`);
  const { w, linear, rows } = layerWeights(g, spec, stored, layer);
  const rmsNorm = (x: string, key: string): string =>
    g.op('SimplifiedLayerNormalization', [x, w(key)], { axis: attr.int(-1), epsilon: attr.float(spec.rmsNormEps) });
  const hidden = spec.hiddenSize;
  const l = layer;
  const positionIds = g.input(STI_IO.positionIds, 'int64', ['B', 'T']);
  const newBias = g.input(STI_IO.newBias, 'float32', ['B', 1, 'T', 'T']);
  let x: string;
  if (l === 0) {
    const ids = g.input(STI_IO.inputIds, 'int64', ['B', 'T']);
    x = rows(ids, 'embed', hidden);
    if (spec.embedScale !== 1) x = g.op('Mul', [x, g.scalarF32(spec.embedScale)]);
  } else {
    x = g.input(STI_IO.hidden, 'float32', ['N', hidden]);
  }
  const attnWindow = variant === 'stats' ? g.input(STI_IO.attnWindow, 'int64', [1]) : null;
  const pageSize = variant === 'quest' ? g.input(STI_IO.pageSize, 'int64', [1]) : null;
  const actx = attentionContext(g, spec, { w, linear }, { positionIds, newBias, attnWindow, pageSize });
  const io: AttentionLayerIo = {
    pastKey: STI_IO.pastKey,
    pastValue: STI_IO.pastValue,
    pastBias: STI_IO.pastBias,
    presentKey: STI_IO.presentKey,
    presentValue: STI_IO.presentValue,
    dims: { past: 'C', biasHeads: 'Hb', biasRows: 'Tb' },
    ...(variant === 'stats' ? { attnSum: STI_IO.attnSum, attnRows: STI_IO.attnRows } : {}),
    ...(variant === 'quest' ? { quest: { pageMin: STI_IO.pageMin, pageMax: STI_IO.pageMax, pageBias: STI_IO.pageBias, k: STI_IO.questK, pages: 'NP' } } : {}),
  };
  // The dense graph fuses each residual add into the next RMSNorm (SkipSimplifiedLayerNormalization), whose
  // normalized output is not bit-identical to SimplifiedLayerNormalization's; the same kernel runs here, so
  // all-32-bit plans stay bit-identical. Across the layer boundary the sum arrives already added, with a zero skip.
  const skipNorm = (input: string, skip: string, key: string, which: string): [string, string] => {
    const [normed, , , sum] = g.node(
      'SkipSimplifiedLayerNormalization',
      [input, skip, w(key)],
      { epsilon: attr.float(spec.rmsNormEps) },
      {
        domain: 'com.microsoft',
        outputs: [`${which}_norm`, '', '', `${which}_sum`],
      },
    );
    if (normed === undefined || sum === undefined) throw new Error('unreachable');
    return [normed, sum];
  };
  const inNormed = l === 0 ? rmsNorm(x, `l${l}.in_norm`) : skipNorm(x, g.op('Sub', [x, x]), `l${l}.in_norm`, 'in')[0];
  let o = attentionBlock(actx, l, inNormed, io);
  if (spec.sandwichNorms) o = rmsNorm(o, `l${l}.attn_out_norm`);
  const [h2, afterAttention] = skipNorm(x, o, `l${l}.post_norm`, 'post');
  x = afterAttention;
  const gu = linear(h2, `l${l}.gate_up`);
  const [gate, up] = g.node(
    'Split',
    [gu, g.int64s([spec.intermediateSize, spec.intermediateSize])],
    { axis: attr.int(1) },
    { outputs: [`gate_${l}`, `up_${l}`] },
  );
  if (!gate || !up) throw new Error('unreachable');
  let m = linear(g.op('Mul', [gatedActivation(g, spec, gate), up]), `l${l}.down`);
  if (spec.sandwichNorms) m = rmsNorm(m, `l${l}.mlp_out_norm`);
  g.node('Add', [x, m], {}, { outputs: [STI_IO.hiddenOut] });
  declareAttentionOutputs(g, spec, io, 'S');
  g.output(STI_IO.hiddenOut, 'float32', ['N', hidden]);
  return g.toModelBytes(17);
}

export function buildStiHeadGraph(spec: ModelSpec, stored: MoeStoredWeights): Uint8Array {
  const g = new GraphBuilder(`capserve-sti-${spec.architecture}-head`);
  const { w, linear } = graphWeights(g, stored.tensors, stored.linears, 0);
  const hidden = spec.hiddenSize;
  const x = g.input(STI_IO.hidden, 'float32', ['N', hidden]);
  const logitIndex = g.input(STI_IO.logitIndex, 'int64', ['B', 'K']);
  const b = g.op('Slice', [g.op('Shape', [logitIndex]), g.int64s([0]), g.int64s([1])]);
  const x3 = g.op('Reshape', [x, g.op('Concat', [b, g.int64s([-1, hidden])], { axis: attr.int(0) })]);
  const idxShape = g.op('Concat', [g.op('Shape', [logitIndex]), g.int64s([hidden])], { axis: attr.int(0) });
  const idx = g.op('Expand', [g.op('Unsqueeze', [logitIndex, g.int64s([-1])]), idxShape]);
  const picked = g.op('Reshape', [g.op('GatherElements', [x3, idx], { axis: attr.int(1) }), g.int64s([-1, hidden])]);
  const normed = g.op('SimplifiedLayerNormalization', [picked, w('final_norm')], { axis: attr.int(-1), epsilon: attr.float(spec.rmsNormEps) });
  let logits2d = linear(normed, 'lm_head');
  const cap = spec.finalLogitSoftcap;
  if (cap !== null) logits2d = g.op('Mul', [g.op('Tanh', [g.op('Mul', [logits2d, g.scalarF32(1 / cap)])]), g.scalarF32(cap)]);
  const logitShape = g.op('Concat', [g.op('Shape', [logitIndex]), g.int64s([spec.vocabSize])], { axis: attr.int(0) });
  g.node('Reshape', [logits2d, logitShape], {}, { outputs: [STI_IO.logits] });
  g.output(STI_IO.logits, 'float32', ['B', 'K', spec.vocabSize]);
  return g.toModelBytes(17);
}
