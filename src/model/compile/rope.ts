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
 * The graph's RoPE for this call's positions: cos/sin computed once per pass in
 * float32 from position_ids exactly as transformers does, one row per (sequence,
 * token); returned as a function applying the rotate-half rotation to the first
 * rotaryDim channels of every head of a [B, T, heads * D] tensor (the rest pass
 * through) with onnxruntime's fused RotaryEmbedding, one node per use. Longrope
 * switches each sequence of the batch to the long factors once its highest
 * position in this pass reaches original_max_position_embeddings
 * (transformers' dynamic update with batch 1).
 */
export function ropeInGraph(
  g: GraphBuilder,
  spec: ModelSpec,
  positionIds: string,
  rope: RopeParameters = { theta: spec.ropeTheta, scaling: spec.ropeScaling },
): (x: string, heads: number) => string {
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
  // RotaryEmbedding looks rows up by position id: give it this pass's rows [B*T, R/2] and ids 0..B*T-1 as [B, T].
  const rows = g.int64s([-1, R / 2]);
  const cos = g.op('Reshape', [cosT, rows]);
  const sin = g.op('Reshape', [sinT, rows]);
  const scalar = (v: bigint): string => g.constant('int64', [], BigInt64Array.of(v), 'i64s');
  const rowIds = g.op('Reshape', [g.op('Range', [scalar(0n), g.op('Size', [positionIds]), scalar(1n)]), g.op('Shape', [positionIds])]);
  return (x: string, heads: number): string =>
    g.op(
      'RotaryEmbedding',
      [x, rowIds, cos, sin],
      { interleaved: attr.int(0), num_heads: attr.int(heads), rotary_embedding_dim: attr.int(R === D ? 0 : R) },
      'com.microsoft',
    );
}
