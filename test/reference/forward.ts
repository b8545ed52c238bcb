/**
 * An independent float64 forward pass of Hugging Face's Llama / Qwen2 / Mistral /
 * Qwen3 / SmolLM3 / Phi-3 / Gemma 2 / Gemma 3 decoders and the Mixtral / Qwen2-MoE sparse MLPs, written from the transformers
 * modelling code and sharing nothing with the engine but the ModelSpec /
 * WeightSource types (tensor names are spelled out here, not imported). It is
 * slow and simple on purpose: it is the yardstick the ONNX engine is measured against.
 */
import type { ModelSpec, RopeParameters, WeightSource } from '../../src/model/spec.js';

/**
 * transformers' inv_freq over the rotary dimensions (head_dim x partial_rotary_factor)
 * for the default, linear, llama3 and longrope (short or long factors) rope types, in float64.
 */
export function ropeInvFreq(
  spec: ModelSpec,
  which: 'short' | 'long' = 'short',
  rope: RopeParameters = { theta: spec.ropeTheta, scaling: spec.ropeScaling },
): Float64Array {
  const dim = spec.rotaryDim;
  const theta = rope.theta;
  const inv = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = 1 / theta ** ((2 * i) / dim);
  const scaling = rope.scaling;
  if (scaling === null) return inv;
  if (scaling.type === 'linear') {
    for (let i = 0; i < inv.length; i++) inv[i] = inv[i]! / scaling.factor;
    return inv;
  }
  if (scaling.type === 'longrope') {
    // inv_freq = 1 / (ext_factors * base ** (arange(0, dim, 2) / dim))
    const ext = which === 'long' ? scaling.longFactor : scaling.shortFactor;
    for (let i = 0; i < inv.length; i++) inv[i] = 1 / (ext[i]! * theta ** ((2 * i) / dim));
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
  /** Qwen3's per-head RMSNorm weights [headDim] on q and k, or null. */
  readonly qNorm: Float64Array | null;
  readonly kNorm: Float64Array | null;
  /** This layer's RoPE (Gemma 3's sliding layers have their own), null on SmolLM3's NoPE layers. */
  readonly rope: { readonly short: Float64Array; readonly long: Float64Array; readonly mscale: number } | null;
  /** This layer's sliding window, null for full attention. */
  readonly window: number | null;
  /** Gemma's post_attention_layernorm (on the attention output) and post_feedforward_layernorm; null elsewhere. */
  readonly attnOutNorm: Float64Array | null;
  readonly mlpOutNorm: Float64Array | null;
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

/** Rows [from, from + out) of a [rows, inp] weight (Phi-3's fused qkv_proj / gate_up_proj). */
function rows(w: Float64Array, inp: number, from: number, out: number): Linear {
  return { w: w.slice(from * inp, (from + out) * inp), b: null, out, inp };
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

/** RMSNorm over each head's headDim channels (Qwen3's q_norm / k_norm). */
function headRmsNorm(x: Float64Array, heads: number, headDim: number, weight: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let h = 0; h < heads; h++) y.set(rmsNorm(x.subarray(h * headDim, (h + 1) * headDim), weight, eps), h * headDim);
  return y;
}

function mlpLoad(weights: WeightSource, names: { gate: string; up: string; down: string }, inter: number, h: number): Mlp {
  return {
    gate: linear(weights, names.gate.replace(/\.weight$/, ''), inter, h, false),
    up: linear(weights, names.up.replace(/\.weight$/, ''), inter, h, false),
    down: linear(weights, names.down.replace(/\.weight$/, ''), h, inter, false),
  };
}

/** SwiGLU down(silu(gate(x)) * up(x)), or GeGLU with PyTorch's tanh-approximated GELU (Gemma). */
function mlpForward(m: Mlp, x: Float64Array, act: 'silu' | 'gelu_tanh' = 'silu'): Float64Array {
  const g = matvec(m.gate, x);
  const u = matvec(m.up, x);
  for (let i = 0; i < g.length; i++) {
    const v = g[i]!;
    const a = act === 'silu' ? v / (1 + Math.exp(-v)) : 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    g[i] = a * u[i]!;
  }
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
  const order = probs
    .map((p, i) => ({ p: p / sum, i }))
    .sort((a, b) => b.p - a.p || a.i - b.i)
    .slice(0, topK);
  const total = order.reduce((a, b) => a + b.p, 0);
  return { experts: order.map((o) => o.i), weights: order.map((o) => (normalize ? o.p / total : o.p)) };
}

/** rotate-half RoPE on the first 2 * cos.length channels of each head of vec, in place (the rest pass through). */
function applyRope(vec: Float64Array, heads: number, headDim: number, cos: Float64Array, sin: Float64Array): void {
  const half = cos.length;
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
    shared:
      si === null
        ? null
        : mlpLoad(
            weights,
            { gate: `${base}.shared_expert.gate_proj.weight`, up: `${base}.shared_expert.up_proj.weight`, down: `${base}.shared_expert.down_proj.weight` },
            si,
            h,
          ),
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
  private position = 0;
  /** Longrope: whether the current pass uses the long factors (the model's RoPE decides, per pass). */
  private longPass = false;
  /** Per fed position, per layer: where the router sent the token (empty for dense models). */
  readonly routing: Routing[][] = [];

  constructor(
    private readonly spec: ModelSpec,
    weights: WeightSource,
  ) {
    const { hiddenSize: h, numHeads, numKvHeads, headDim, intermediateSize: inter, vocabSize } = spec;
    this.embed = load(weights, 'model.embed_tokens.weight', [vocabSize, h]);
    this.lmHead = spec.tieWordEmbeddings ? this.embed : load(weights, 'lm_head.weight', [vocabSize, h]);
    this.finalNorm = load(weights, 'model.norm.weight', [h]).map((w) => (spec.normUnitOffset ? 1 + w : w));
    for (let i = 0; i < spec.numLayers; i++) {
      const p = `model.layers.${i}`;
      const qDim = numHeads * headDim;
      const kvDim = numKvHeads * headDim;
      let q: Linear;
      let k: Linear;
      let v: Linear;
      if (spec.packedProjections) {
        const qkv = load(weights, `${p}.self_attn.qkv_proj.weight`, [qDim + 2 * kvDim, h]);
        q = rows(qkv, h, 0, qDim);
        k = rows(qkv, h, qDim, kvDim);
        v = rows(qkv, h, qDim + kvDim, kvDim);
      } else {
        q = linear(weights, `${p}.self_attn.q_proj`, qDim, h, spec.attentionBias);
        k = linear(weights, `${p}.self_attn.k_proj`, kvDim, h, spec.attentionBias);
        v = linear(weights, `${p}.self_attn.v_proj`, kvDim, h, spec.attentionBias);
      }
      let mlp: Mlp | null = null;
      if (spec.moe === undefined && spec.packedProjections) {
        // Phi3MLP: gate, up = gate_up_proj(x).chunk(2)
        const gu = load(weights, `${p}.mlp.gate_up_proj.weight`, [2 * inter, h]);
        mlp = { gate: rows(gu, h, 0, inter), up: rows(gu, h, inter, inter), down: linear(weights, `${p}.mlp.down_proj`, h, inter, false) };
      } else if (spec.moe === undefined) {
        mlp = mlpLoad(weights, { gate: `${p}.mlp.gate_proj.weight`, up: `${p}.mlp.up_proj.weight`, down: `${p}.mlp.down_proj.weight` }, inter, h);
      }
      // Gemma's RMSNorm multiplies by (1 + weight).
      const norm = (name: string, size: number): Float64Array => load(weights, `${p}.${name}.weight`, [size]).map((w) => (spec.normUnitOffset ? 1 + w : w));
      const window = spec.layerWindows[i] ?? null;
      const ropeParams =
        spec.ropeLayers[i] === false
          ? null
          : window !== null && spec.slidingRope !== null
            ? spec.slidingRope
            : { theta: spec.ropeTheta, scaling: spec.ropeScaling };
      const short = ropeParams === null ? null : ropeInvFreq(spec, 'short', ropeParams);
      this.layers.push({
        inputNorm: norm('input_layernorm', h),
        // Gemma: post_attention_layernorm is on the attention output and pre_feedforward_layernorm feeds the MLP.
        postNorm: spec.sandwichNorms ? norm('pre_feedforward_layernorm', h) : norm('post_attention_layernorm', h),
        attnOutNorm: spec.sandwichNorms ? norm('post_attention_layernorm', h) : null,
        mlpOutNorm: spec.sandwichNorms ? norm('post_feedforward_layernorm', h) : null,
        window,
        q,
        k,
        v,
        o: linear(weights, `${p}.self_attn.o_proj`, h, qDim, spec.outputBias),
        qNorm: spec.qkNorm ? norm('self_attn.q_norm', headDim) : null,
        kNorm: spec.qkNorm ? norm('self_attn.k_norm', headDim) : null,
        rope:
          ropeParams === null || short === null
            ? null
            : {
                short,
                long: ropeParams.scaling?.type === 'longrope' ? ropeInvFreq(spec, 'long', ropeParams) : short,
                // Longrope scales cos and sin by its attention factor; the other types by 1.
                mscale: ropeParams.scaling?.type === 'longrope' ? ropeParams.scaling.attentionFactor : 1,
              },
        mlp,
        moe: spec.moe === undefined ? null : loadMoe(spec, weights, i),
        keys: [],
        values: [],
      });
    }
  }

  /** Number of positions fed so far. */
  get length(): number {
    return this.position;
  }

  /**
   * Feeds ids at the next positions as one forward pass; returns logits (vocabSize)
   * for each of them. Longrope picks its factors per pass, as transformers' dynamic
   * update does: long once the pass's highest position + 1 exceeds original_max_position_embeddings.
   */
  append(ids: readonly number[]): Float64Array[] {
    const sc = this.spec.ropeScaling;
    this.longPass = sc?.type === 'longrope' && this.position + ids.length > sc.originalMaxPositionEmbeddings;
    return ids.map((id) => this.step(id));
  }

  private step(id: number): Float64Array {
    const s = this.spec;
    const { hiddenSize: h, numHeads, numKvHeads, headDim } = s;
    if (!Number.isInteger(id) || id < 0 || id >= s.vocabSize) throw new RangeError(`reference: token id ${id} out of range`);
    const pos = this.position++;
    // Gemma scales the embeddings (by float32(sqrt(hidden_size))).
    const x = this.embed.slice(id * h, (id + 1) * h).map((v) => v * s.embedScale);
    const group = numHeads / numKvHeads;
    const scale = s.attentionScale;
    const cap = s.attnLogitSoftcap;
    const routing: Routing[] = [];

    for (const [li, layer] of this.layers.entries()) {
      // HF sliding window: the query at i sees keys j with i - window < j <= i.
      const first = layer.window === null ? 0 : Math.max(0, pos - layer.window + 1);
      const xn = rmsNorm(x, layer.inputNorm, s.rmsNormEps);
      let q = matvec(layer.q, xn);
      let k = matvec(layer.k, xn);
      const v = matvec(layer.v, xn);
      if (layer.qNorm !== null && layer.kNorm !== null) {
        q = headRmsNorm(q, numHeads, headDim, layer.qNorm, s.rmsNormEps);
        k = headRmsNorm(k, numKvHeads, headDim, layer.kNorm, s.rmsNormEps);
      }
      if (layer.rope !== null) {
        const invFreq = this.longPass ? layer.rope.long : layer.rope.short;
        const cos = invFreq.map((f) => Math.cos(pos * f) * (layer.rope?.mscale ?? 1));
        const sin = invFreq.map((f) => Math.sin(pos * f) * (layer.rope?.mscale ?? 1));
        applyRope(q, numHeads, headDim, cos, sin);
        applyRope(k, numKvHeads, headDim, cos, sin);
      }
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
          // Gemma 2 soft-caps scores before the mask: cap * tanh(score / cap); a policy's rule masks after.
          const sc = allow !== null && !allow(Math.floor(hq / group), j) ? -Infinity : cap === null ? dot * scale : cap * Math.tanh((dot * scale) / cap);
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
      let o = matvec(layer.o, attn);
      if (layer.attnOutNorm !== null) o = rmsNorm(o, layer.attnOutNorm, s.rmsNormEps);
      for (let i = 0; i < h; i++) x[i] = x[i]! + o[i]!;

      const xn2 = rmsNorm(x, layer.postNorm, s.rmsNormEps);
      if (layer.mlp !== null) {
        let m = mlpForward(layer.mlp, xn2, s.hiddenAct);
        if (layer.mlpOutNorm !== null) m = rmsNorm(m, layer.mlpOutNorm, s.rmsNormEps);
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
      // Gemma 2's final soft-capping.
      logits[t] = s.finalLogitSoftcap === null ? dot : s.finalLogitSoftcap * Math.tanh(dot / s.finalLogitSoftcap);
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
