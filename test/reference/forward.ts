/**
 * An independent float64 forward pass of Hugging Face's Llama / Qwen2 / Mistral
 * decoders, written from the transformers modelling code and sharing nothing with
 * the engine but the ModelSpec / WeightSource types. It is slow and simple on
 * purpose: it is the yardstick the ONNX engine is measured against.
 */
import type { ModelSpec, WeightSource } from '../../src/model/spec.js';

/** transformers' inv_freq for the default, linear and llama3 rope types, in float64. */
export function ropeInvFreq(spec: ModelSpec): Float64Array {
  const dim = spec.headDim;
  const inv = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = 1 / spec.ropeTheta ** ((2 * i) / dim);
  const scaling = spec.ropeScaling;
  if (scaling === null) return inv;
  if (scaling.type === 'linear') {
    for (let i = 0; i < inv.length; i++) inv[i] = inv[i]! / scaling.factor;
    return inv;
  }
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldLen } = scaling;
  const lowFreqWavelen = oldLen / lowFreqFactor;
  const highFreqWavelen = oldLen / highFreqFactor;
  for (let i = 0; i < inv.length; i++) {
    const f = inv[i]!;
    const wavelen = (2 * Math.PI) / f;
    let scaled = wavelen > lowFreqWavelen ? f / factor : f;
    const isMedium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (isMedium) {
      const smooth = (oldLen / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      scaled = ((1 - smooth) * scaled) / factor + smooth * scaled;
    }
    inv[i] = scaled;
  }
  return inv;
}

interface Linear {
  readonly w: Float64Array;
  readonly b: Float64Array | null;
  readonly out: number;
  readonly inp: number;
}

interface Layer {
  readonly inputNorm: Float64Array;
  readonly postNorm: Float64Array;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
  /** Post-RoPE keys and values, one vector per position (numKvHeads * headDim). */
  readonly keys: Float64Array[];
  readonly values: Float64Array[];
}

function load(weights: WeightSource, name: string, shape: readonly number[]): Float64Array {
  const t = weights.get(name);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`reference: ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return Float64Array.from(t.data);
}

function linear(weights: WeightSource, prefix: string, out: number, inp: number, bias: boolean): Linear {
  return {
    w: load(weights, `${prefix}.weight`, [out, inp]),
    b: bias ? load(weights, `${prefix}.bias`, [out]) : null,
    out,
    inp,
  };
}

function matvec(l: Linear, x: Float64Array): Float64Array {
  const y = new Float64Array(l.out);
  for (let r = 0; r < l.out; r++) {
    let s = l.b === null ? 0 : l.b[r]!;
    const base = r * l.inp;
    for (let c = 0; c < l.inp; c++) s += l.w[base + c]! * x[c]!;
    y[r] = s;
  }
  return y;
}

function rmsNorm(x: Float64Array, weight: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * inv * weight[i]!;
  return y;
}

/** rotate-half RoPE on each head of vec, in place. */
function applyRope(vec: Float64Array, heads: number, headDim: number, cos: Float64Array, sin: Float64Array): void {
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    const o = h * headDim;
    for (let i = 0; i < half; i++) {
      const x1 = vec[o + i]!;
      const x2 = vec[o + i + half]!;
      vec[o + i] = x1 * cos[i]! - x2 * sin[i]!;
      vec[o + i + half] = x2 * cos[i]! + x1 * sin[i]!;
    }
  }
}

/** A float64 model with a KV cache: feed tokens, get the logits at each fed position. */
export class ReferenceModel {
  private readonly embed: Float64Array;
  private readonly lmHead: Float64Array;
  private readonly finalNorm: Float64Array;
  private readonly layers: Layer[] = [];
  private readonly invFreq: Float64Array;
  private position = 0;

  constructor(
    private readonly spec: ModelSpec,
    weights: WeightSource,
  ) {
    const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: inter, vocabSize } = spec;
    this.embed = load(weights, 'model.embed_tokens.weight', [vocabSize, h]);
    this.lmHead = spec.tieWordEmbeddings ? this.embed : load(weights, 'lm_head.weight', [vocabSize, h]);
    this.finalNorm = load(weights, 'model.norm.weight', [h]);
    for (let i = 0; i < spec.numLayers; i++) {
      const p = `model.layers.${i}`;
      this.layers.push({
        inputNorm: load(weights, `${p}.input_layernorm.weight`, [h]),
        postNorm: load(weights, `${p}.post_attention_layernorm.weight`, [h]),
        q: linear(weights, `${p}.self_attn.q_proj`, numHeads * headDim, h, spec.attentionBias),
        k: linear(weights, `${p}.self_attn.k_proj`, numKvHeads * headDim, h, spec.attentionBias),
        v: linear(weights, `${p}.self_attn.v_proj`, numKvHeads * headDim, h, spec.attentionBias),
        o: linear(weights, `${p}.self_attn.o_proj`, h, numHeads * headDim, spec.outputBias),
        gate: linear(weights, `${p}.mlp.gate_proj`, inter, h, false),
        up: linear(weights, `${p}.mlp.up_proj`, inter, h, false),
        down: linear(weights, `${p}.mlp.down_proj`, h, inter, false),
        keys: [],
        values: [],
      });
    }
    this.invFreq = ropeInvFreq(spec);
  }

  /** Number of positions fed so far. */
  get length(): number {
    return this.position;
  }

  /** Feeds ids at the next positions; returns logits (vocabSize) for each of them. */
  append(ids: readonly number[]): Float64Array[] {
    return ids.map((id) => this.step(id));
  }

  private step(id: number): Float64Array {
    const s = this.spec;
    const { hiddenSize: h, numHeads, numKvHeads, headDim } = s;
    if (!Number.isInteger(id) || id < 0 || id >= s.vocabSize) throw new RangeError(`reference: token id ${id} out of range`);
    const pos = this.position++;
    const half = headDim / 2;
    const cos = new Float64Array(half);
    const sin = new Float64Array(half);
    for (let i = 0; i < half; i++) {
      const angle = pos * this.invFreq[i]!;
      cos[i] = Math.cos(angle);
      sin[i] = Math.sin(angle);
    }
    const x = this.embed.slice(id * h, (id + 1) * h);
    const group = numHeads / numKvHeads;
    const scale = 1 / Math.sqrt(headDim);
    // HF sliding window: the query at i sees keys j with i - window < j <= i.
    const first = s.slidingWindow === null ? 0 : Math.max(0, pos - s.slidingWindow + 1);

    for (const layer of this.layers) {
      const xn = rmsNorm(x, layer.inputNorm, s.rmsNormEps);
      const q = matvec(layer.q, xn);
      const k = matvec(layer.k, xn);
      const v = matvec(layer.v, xn);
      applyRope(q, numHeads, headDim, cos, sin);
      applyRope(k, numKvHeads, headDim, cos, sin);
      layer.keys.push(k);
      layer.values.push(v);

      const attn = new Float64Array(numHeads * headDim);
      const scores = new Float64Array(pos + 1 - first);
      for (let hq = 0; hq < numHeads; hq++) {
        const kvOff = Math.floor(hq / group) * headDim;
        const qOff = hq * headDim;
        let max = -Infinity;
        for (let j = first; j <= pos; j++) {
          const kj = layer.keys[j]!;
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += q[qOff + d]! * kj[kvOff + d]!;
          const sc = dot * scale;
          scores[j - first] = sc;
          if (sc > max) max = sc;
        }
        let sum = 0;
        for (let j = 0; j < scores.length; j++) {
          const e = Math.exp(scores[j]! - max);
          scores[j] = e;
          sum += e;
        }
        for (let j = first; j <= pos; j++) {
          const p = scores[j - first]! / sum;
          const vj = layer.values[j]!;
          for (let d = 0; d < headDim; d++) attn[qOff + d] = attn[qOff + d]! + p * vj[kvOff + d]!;
        }
      }
      const o = matvec(layer.o, attn);
      for (let i = 0; i < h; i++) x[i] = x[i]! + o[i]!;

      const xn2 = rmsNorm(x, layer.postNorm, s.rmsNormEps);
      const g = matvec(layer.gate, xn2);
      const u = matvec(layer.up, xn2);
      for (let i = 0; i < g.length; i++) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
      const m = matvec(layer.down, g);
      for (let i = 0; i < h; i++) x[i] = x[i]! + m[i]!;
    }

    const final = rmsNorm(x, this.finalNorm, s.rmsNormEps);
    const logits = new Float64Array(s.vocabSize);
    for (let t = 0; t < s.vocabSize; t++) {
      let dot = 0;
      const base = t * h;
      for (let i = 0; i < h; i++) dot += this.lmHead[base + i]! * final[i]!;
      logits[t] = dot;
    }
    return logits;
  }
}

/** Logits at every position of ids (positions 0..ids.length-1). */
export function referenceLogits(spec: ModelSpec, weights: WeightSource, ids: readonly number[]): Float64Array[] {
  return new ReferenceModel(spec, weights).append(ids);
}

export function argmax(values: Float64Array | Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** Greedy continuation: steps argmax ids after ids (no early stop). */
export function referenceGreedy(spec: ModelSpec, weights: WeightSource, ids: readonly number[], steps: number): number[] {
  const model = new ReferenceModel(spec, weights);
  let logits = model.append(ids).at(-1);
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    if (logits === undefined) throw new Error('reference: greedy needs at least one input id');
    const next = argmax(logits);
    out.push(next);
    logits = model.append([next])[0];
  }
  return out;
}
