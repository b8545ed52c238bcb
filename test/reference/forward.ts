/**
 * An independent float64 forward pass of Hugging Face's Llama / Qwen2 / Mistral
 * decoders and the Mixtral / Qwen2-MoE sparse MLPs, written from the transformers
 * modelling code and sharing nothing with the engine but the ModelSpec /
 * WeightSource types (tensor names are spelled out here, not imported). It is
 * slow and simple on purpose: it is the yardstick the ONNX engine is measured against.
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

interface Mlp {
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
}

interface SparseMoe {
  readonly router: Linear;
  readonly experts: Mlp[];
  readonly shared: Mlp | null;
  readonly sharedGate: Linear | null;
}

interface Layer {
  readonly inputNorm: Float64Array;
  readonly postNorm: Float64Array;
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  /** The dense MLP, or null for an MoE layer. */
  readonly mlp: Mlp | null;
  readonly moe: SparseMoe | null;
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

function mlpLoad(weights: WeightSource, names: { gate: string; up: string; down: string }, inter: number, h: number): Mlp {
  return {
    gate: linear(weights, names.gate.replace(/\.weight$/, ''), inter, h, false),
    up: linear(weights, names.up.replace(/\.weight$/, ''), inter, h, false),
    down: linear(weights, names.down.replace(/\.weight$/, ''), h, inter, false),
  };
}

/** SwiGLU: down(silu(gate(x)) * up(x)). */
function mlpForward(m: Mlp, x: Float64Array): Float64Array {
  const g = matvec(m.gate, x);
  const u = matvec(m.up, x);
  for (let i = 0; i < g.length; i++) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
  return matvec(m.down, g);
}

/** The experts a token was routed to and their weights, as transformers computes them. */
export interface Routing {
  readonly experts: number[];
  readonly weights: number[];
}

/** softmax over all experts, top-k (ties to the lower index), optionally renormalised. */
export function routeTopK(logits: Float64Array, topK: number, normalize: boolean): Routing {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const probs = Array.from(logits, (v) => Math.exp(v - max));
  const sum = probs.reduce((a, b) => a + b, 0);
  const order = probs.map((p, i) => ({ p: p / sum, i })).sort((a, b) => b.p - a.p || a.i - b.i).slice(0, topK);
  const total = order.reduce((a, b) => a + b.p, 0);
  return { experts: order.map((o) => o.i), weights: order.map((o) => (normalize ? o.p / total : o.p)) };
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

/** Mixtral: block_sparse_moe.{gate, experts.E.w1/w3/w2}; Qwen2-MoE: mlp.{gate, experts.E.gate_proj/up_proj/down_proj, shared_expert, shared_expert_gate}. */
function loadMoe(spec: ModelSpec, weights: WeightSource, layer: number): SparseMoe {
  const moe = spec.moe;
  if (moe === undefined) throw new Error('reference: not an MoE model');
  const h = spec.hiddenSize;
  const p = `model.layers.${layer}`;
  const mixtral = spec.architecture === 'mixtral';
  const base = mixtral ? `${p}.block_sparse_moe` : `${p}.mlp`;
  const experts: Mlp[] = [];
  for (let e = 0; e < moe.numExperts; e++) {
    const x = `${base}.experts.${e}`;
    const names = mixtral
      ? { gate: `${x}.w1.weight`, up: `${x}.w3.weight`, down: `${x}.w2.weight` }
      : { gate: `${x}.gate_proj.weight`, up: `${x}.up_proj.weight`, down: `${x}.down_proj.weight` };
    experts.push(mlpLoad(weights, names, moe.expertIntermediateSize, h));
  }
  const si = moe.sharedExpertIntermediateSize;
  return {
    router: linear(weights, `${base}.gate`, moe.numExperts, h, false),
    experts,
    shared: si === null ? null : mlpLoad(weights, { gate: `${base}.shared_expert.gate_proj.weight`, up: `${base}.shared_expert.up_proj.weight`, down: `${base}.shared_expert.down_proj.weight` }, si, h),
    sharedGate: si === null ? null : linear(weights, `${base}.shared_expert_gate`, 1, h, false),
  };
}

/**
 * A restriction of attention for one layer at one step, written by a test from
 * a method's paper (A-shape, Quest's page selection): given the step's
 * post-RoPE query [numHeads * headDim] and every cached post-RoPE key so far
 * (one [numKvHeads * headDim] row per position, the current one last), which
 * keys each KV head's queries may read; null: all of them (causal).
 */
export type AttentionRule = (step: {
  readonly layer: number;
  readonly pos: number;
  readonly query: Float64Array;
  readonly keys: readonly Float64Array[];
}) => ((kvHead: number, keyPos: number) => boolean) | null;

/** A float64 model with a KV cache: feed tokens, get the logits at each fed position. */
export class ReferenceModel {
  /** Applied to every position fed while set. */
  attentionRule: AttentionRule | null = null;
  private readonly embed: Float64Array;
  private readonly lmHead: Float64Array;
  private readonly finalNorm: Float64Array;
  private readonly layers: Layer[] = [];
  private readonly invFreq: Float64Array;
  private position = 0;
  /** Per fed position, per layer: where the router sent the token (empty for dense models). */
  readonly routing: Routing[][] = [];

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
        mlp: spec.moe === undefined ? mlpLoad(weights, { gate: `${p}.mlp.gate_proj.weight`, up: `${p}.mlp.up_proj.weight`, down: `${p}.mlp.down_proj.weight` }, inter, h) : null,
        moe: spec.moe === undefined ? null : loadMoe(spec, weights, i),
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
    const routing: Routing[] = [];

    for (const [li, layer] of this.layers.entries()) {
      const xn = rmsNorm(x, layer.inputNorm, s.rmsNormEps);
      const q = matvec(layer.q, xn);
      const k = matvec(layer.k, xn);
      const v = matvec(layer.v, xn);
      applyRope(q, numHeads, headDim, cos, sin);
      applyRope(k, numKvHeads, headDim, cos, sin);
      layer.keys.push(k);
      layer.values.push(v);
      const allow = this.attentionRule?.({ layer: li, pos, query: q, keys: layer.keys }) ?? null;

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
          const sc = allow === null || allow(Math.floor(hq / group), j) ? dot * scale : -Infinity;
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
      if (layer.mlp !== null) {
        const m = mlpForward(layer.mlp, xn2);
        for (let i = 0; i < h; i++) x[i] = x[i]! + m[i]!;
      } else if (layer.moe !== null && s.moe !== undefined) {
        const r = routeTopK(matvec(layer.moe.router, xn2), s.moe.topK, s.moe.normTopKProb);
        routing.push(r);
        r.experts.forEach((e, j) => {
          const expert = layer.moe?.experts[e];
          if (expert === undefined) throw new Error(`reference: expert ${e} missing`);
          const m = mlpForward(expert, xn2);
          const wgt = r.weights[j]!;
          for (let i = 0; i < h; i++) x[i] = x[i]! + wgt * m[i]!;
        });
        if (layer.moe.shared !== null && layer.moe.sharedGate !== null) {
          const m = mlpForward(layer.moe.shared, xn2);
          const gate = 1 / (1 + Math.exp(-matvec(layer.moe.sharedGate, xn2)[0]!));
          for (let i = 0; i < h; i++) x[i] = x[i]! + gate * m[i]!;
        }
      }
    }
    this.routing.push(routing);

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
