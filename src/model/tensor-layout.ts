/**
 * The Hugging Face tensor names and shapes a ModelSpec implies. The checkpoint
 * loader checks against this list and the tiny-model generator writes exactly it.
 */
import type { ModelSpec } from './spec.js';

export interface ExpectedTensor {
  readonly name: string;
  readonly shape: readonly number[];
}

export function layerPrefix(layer: number): string {
  return `model.layers.${layer}`;
}

/** One routed expert's SwiGLU projections by their Hugging Face names (gate [I, h], up [I, h], down [h, I]). */
export interface ExpertTensorNames {
  readonly gate: string;
  readonly up: string;
  readonly down: string;
}

export function expertTensorNames(spec: ModelSpec, layer: number, expert: number): ExpertTensorNames {
  const p = layerPrefix(layer);
  if (spec.architecture === 'mixtral') {
    const e = `${p}.block_sparse_moe.experts.${expert}`;
    return { gate: `${e}.w1.weight`, up: `${e}.w3.weight`, down: `${e}.w2.weight` };
  }
  const e = `${p}.mlp.experts.${expert}`;
  return { gate: `${e}.gate_proj.weight`, up: `${e}.up_proj.weight`, down: `${e}.down_proj.weight` };
}

/** The router's [numExperts, hidden] weight. */
export function routerTensorName(spec: ModelSpec, layer: number): string {
  return spec.architecture === 'mixtral' ? `${layerPrefix(layer)}.block_sparse_moe.gate.weight` : `${layerPrefix(layer)}.mlp.gate.weight`;
}

/** Qwen2-MoE's shared expert and its scalar gate. */
export function sharedExpertTensorNames(layer: number): ExpertTensorNames & { readonly sharedGate: string } {
  const e = `${layerPrefix(layer)}.mlp.shared_expert`;
  return {
    gate: `${e}.gate_proj.weight`,
    up: `${e}.up_proj.weight`,
    down: `${e}.down_proj.weight`,
    sharedGate: `${layerPrefix(layer)}.mlp.shared_expert_gate.weight`,
  };
}

function moeLayerTensors(spec: ModelSpec, layer: number): ExpectedTensor[] {
  const moe = spec.moe;
  if (moe === undefined) return [];
  const h = spec.hiddenSize;
  const out: ExpectedTensor[] = [{ name: routerTensorName(spec, layer), shape: [moe.numExperts, h] }];
  for (let e = 0; e < moe.numExperts; e++) {
    const n = expertTensorNames(spec, layer, e);
    const i = moe.expertIntermediateSize;
    out.push({ name: n.gate, shape: [i, h] }, { name: n.up, shape: [i, h] }, { name: n.down, shape: [h, i] });
  }
  if (moe.sharedExpertIntermediateSize !== null) {
    const s = sharedExpertTensorNames(layer);
    const i = moe.sharedExpertIntermediateSize;
    out.push({ name: s.gate, shape: [i, h] }, { name: s.up, shape: [i, h] }, { name: s.down, shape: [h, i] }, { name: s.sharedGate, shape: [1, h] });
  }
  return out;
}

export function expectedTensors(spec: ModelSpec): ExpectedTensor[] {
  const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: inter, vocabSize } = spec;
  const q = numHeads * headDim;
  const kv = numKvHeads * headDim;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [vocabSize, h] }];
  for (let i = 0; i < spec.numLayers; i++) {
    const p = layerPrefix(i);
    out.push({ name: `${p}.input_layernorm.weight`, shape: [h] });
    if (spec.packedProjections) {
      out.push({ name: `${p}.self_attn.qkv_proj.weight`, shape: [q + 2 * kv, h] });
    } else {
      out.push(
        { name: `${p}.self_attn.q_proj.weight`, shape: [q, h] },
        { name: `${p}.self_attn.k_proj.weight`, shape: [kv, h] },
        { name: `${p}.self_attn.v_proj.weight`, shape: [kv, h] },
      );
    }
    if (spec.attentionBias) {
      out.push(
        { name: `${p}.self_attn.q_proj.bias`, shape: [q] },
        { name: `${p}.self_attn.k_proj.bias`, shape: [kv] },
        { name: `${p}.self_attn.v_proj.bias`, shape: [kv] },
      );
    }
    if (spec.qkNorm) {
      out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [headDim] }, { name: `${p}.self_attn.k_norm.weight`, shape: [headDim] });
    }
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [h, q] });
    if (spec.outputBias) out.push({ name: `${p}.self_attn.o_proj.bias`, shape: [h] });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [h] });
    if (spec.sandwichNorms) {
      out.push({ name: `${p}.pre_feedforward_layernorm.weight`, shape: [h] }, { name: `${p}.post_feedforward_layernorm.weight`, shape: [h] });
    }
    if (spec.moe === undefined && spec.packedProjections) {
      out.push({ name: `${p}.mlp.gate_up_proj.weight`, shape: [2 * inter, h] }, { name: `${p}.mlp.down_proj.weight`, shape: [h, inter] });
    } else if (spec.moe === undefined) {
      out.push(
        { name: `${p}.mlp.gate_proj.weight`, shape: [inter, h] },
        { name: `${p}.mlp.up_proj.weight`, shape: [inter, h] },
        { name: `${p}.mlp.down_proj.weight`, shape: [h, inter] },
      );
    } else {
      out.push(...moeLayerTensors(spec, i));
    }
  }
  out.push({ name: 'model.norm.weight', shape: [h] });
  if (!spec.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [vocabSize, h] });
  return out;
}
