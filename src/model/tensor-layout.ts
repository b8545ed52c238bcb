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

export function expectedTensors(spec: ModelSpec): ExpectedTensor[] {
  const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: inter, vocabSize } = spec;
  const q = numHeads * headDim;
  const kv = numKvHeads * headDim;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [vocabSize, h] }];
  for (let i = 0; i < spec.numLayers; i++) {
    const p = layerPrefix(i);
    out.push(
      { name: `${p}.input_layernorm.weight`, shape: [h] },
      { name: `${p}.self_attn.q_proj.weight`, shape: [q, h] },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kv, h] },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kv, h] },
    );
    if (spec.attentionBias) {
      out.push(
        { name: `${p}.self_attn.q_proj.bias`, shape: [q] },
        { name: `${p}.self_attn.k_proj.bias`, shape: [kv] },
        { name: `${p}.self_attn.v_proj.bias`, shape: [kv] },
      );
    }
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [h, q] });
    if (spec.outputBias) out.push({ name: `${p}.self_attn.o_proj.bias`, shape: [h] });
    out.push(
      { name: `${p}.post_attention_layernorm.weight`, shape: [h] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [inter, h] },
      { name: `${p}.mlp.up_proj.weight`, shape: [inter, h] },
      { name: `${p}.mlp.down_proj.weight`, shape: [h, inter] },
    );
  }
  out.push({ name: 'model.norm.weight', shape: [h] });
  if (!spec.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [vocabSize, h] });
  return out;
}
