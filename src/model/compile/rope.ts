/**
 * RoPE inverse frequencies, computed exactly as Hugging Face transformers does
 * (modeling_rope_utils: default, linear, llama3 and longrope, over the first
 * rotaryDim channels of a head), so positions line up with checkpoints trained there.
 */
import { attr, type GraphBuilder } from '../onnx/graph-builder.js';
import type { ModelSpec, RopeParameters } from '../spec.js';

/** The RoPE layer l uses: its sliding-layer RoPE on Gemma 3's sliding layers, the model's otherwise; null on a NoPE layer. */
export function layerRope(spec: ModelSpec, layer: number): RopeParameters | null {
  if (spec.ropeLayers[layer] === false) return null;
  if (spec.slidingRope !== null && spec.layerWindows[layer] !== null) return spec.slidingRope;
  return { theta: spec.ropeTheta, scaling: spec.ropeScaling };
}

/**
 * inv_freq [rotaryDim / 2]. For longrope, `which` picks the short factors (the
 * frequencies of every pass whose positions stay below original_max_position_embeddings)
 * or the long ones.
 */
export function ropeInverseFrequencies(
  spec: ModelSpec,
  which: 'short' | 'long' = 'short',
  rope: RopeParameters = { theta: spec.ropeTheta, scaling: spec.ropeScaling },
): Float32Array {
  const dim = spec.rotaryDim;
  const half = dim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(rope.theta, (2 * i) / dim);
  const scaling = rope.scaling;
  if (scaling?.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = (inv[i] ?? 0) / scaling.factor;
  } else if (scaling?.type === 'longrope') {
    const ext = which === 'long' ? scaling.longFactor : scaling.shortFactor;
    for (let i = 0; i < half; i++) inv[i] = (inv[i] ?? 0) / (ext[i] ?? 1);
  } else if (scaling?.type === 'llama3') {
    const lowWavelen = scaling.originalMaxPositionEmbeddings / scaling.lowFreqFactor;
    const highWavelen = scaling.originalMaxPositionEmbeddings / scaling.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i] ?? 0;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) {
        inv[i] = f / scaling.factor;
      } else if (wavelen >= highWavelen) {
        const smooth = (scaling.originalMaxPositionEmbeddings / wavelen - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / scaling.factor) + smooth * f;
      }
    }
  }
  return Float32Array.from(inv);
}

/**
 * The graph's RoPE for this call's positions: cos/sin computed in float32 from
 * position_ids exactly as transformers does, returned as a function applying the
 * rotate-half rotation to the first rotaryDim channels of a [B, T, heads, D]
 * tensor (the rest pass through). Longrope switches each sequence of the batch
 * to the long factors once its highest position in this pass reaches
 * original_max_position_embeddings (transformers' dynamic update with batch 1).
 */
export function ropeInGraph(
  g: GraphBuilder,
  spec: ModelSpec,
  positionIds: string,
  rope: RopeParameters = { theta: spec.ropeTheta, scaling: spec.ropeScaling },
): (x: string) => string {
  const D = spec.headDim;
  const R = spec.rotaryDim;
  const scaling = rope.scaling;
  const posF = g.op('Unsqueeze', [g.op('Cast', [positionIds], { to: attr.int(1) }), g.int64s([-1])]); // [B, T, 1]
  let invFreq = g.constant('float32', [R / 2], ropeInverseFrequencies(spec, 'short', rope), 'inv_freq');
  if (scaling?.type === 'longrope') {
    const long = g.constant('float32', [R / 2], ropeInverseFrequencies(spec, 'long', rope), 'inv_freq_long');
    const maxPos = g.op('ReduceMax', [posF], { axes: attr.ints([1]), keepdims: attr.int(1) }); // [B, 1, 1]
    const isLong = g.op('GreaterOrEqual', [maxPos, g.scalarF32(scaling.originalMaxPositionEmbeddings)]);
    invFreq = g.op('Where', [isLong, long, invFreq]); // [B, 1, R/2]
  }
  const freqs = g.op('Mul', [posF, invFreq]);
  let cosT = g.op('Cos', [freqs]);
  let sinT = g.op('Sin', [freqs]);
  if (scaling?.type === 'longrope' && scaling.attentionFactor !== 1) {
    cosT = g.op('Mul', [cosT, g.scalarF32(scaling.attentionFactor)]);
    sinT = g.op('Mul', [sinT, g.scalarF32(scaling.attentionFactor)]);
  }
  const cos = g.op('Unsqueeze', [cosT, g.int64s([2])]);
  const sin = g.op('Unsqueeze', [sinT, g.int64s([2])]);
  return (x: string): string => {
    const sizes = R === D ? [R / 2, R / 2] : [R / 2, R / 2, D - R];
    const parts = g.node('Split', [x, g.int64s(sizes)], { axis: attr.int(-1) }, { outputs: sizes.map((_, i) => `${x}_h${i + 1}`) });
    const [x1, x2, pass] = parts;
    if (!x1 || !x2) throw new Error('unreachable');
    const r1 = g.op('Sub', [g.op('Mul', [x1, cos]), g.op('Mul', [x2, sin])]);
    const r2 = g.op('Add', [g.op('Mul', [x2, cos]), g.op('Mul', [x1, sin])]);
    return g.op('Concat', pass === undefined ? [r1, r2] : [r1, r2, pass], { axis: attr.int(-1) });
  };
}
