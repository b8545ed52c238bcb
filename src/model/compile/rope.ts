/**
 * RoPE inverse frequencies, computed exactly as Hugging Face transformers does
 * (modeling_rope_utils: default, linear and llama3), so positions line up with
 * checkpoints trained there.
 */
import { attr, type GraphBuilder } from '../onnx/graph-builder.js';
import type { ModelSpec } from '../spec.js';

export function ropeInverseFrequencies(spec: ModelSpec): Float32Array {
  const half = spec.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(spec.ropeTheta, (2 * i) / spec.headDim);
  const scaling = spec.ropeScaling;
  if (scaling?.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = (inv[i] ?? 0) / scaling.factor;
  } else if (scaling?.type === 'llama3') {
    const lowWavelen = scaling.originalMaxPositionEmbeddings / scaling.lowFreqFactor;
    const highWavelen = scaling.originalMaxPositionEmbeddings / scaling.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = inv[i] ?? 0;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) {
        inv[i] = f / scaling.factor;
      } else if (wavelen >= highWavelen) {
        const smooth =
          (scaling.originalMaxPositionEmbeddings / wavelen - scaling.lowFreqFactor) /
          (scaling.highFreqFactor - scaling.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / scaling.factor) + smooth * f;
      }
    }
  }
  return Float32Array.from(inv);
}

/**
 * The graph's RoPE for this call's positions: cos/sin computed in float32 from
 * position_ids exactly as transformers does, returned as a function applying the
 * rotate-half rotation to a [B, T, heads, D] tensor.
 */
export function ropeInGraph(g: GraphBuilder, spec: ModelSpec, positionIds: string): (x: string) => string {
  const D = spec.headDim;
  const invFreq = g.constant('float32', [D / 2], ropeInverseFrequencies(spec), 'inv_freq');
  const posF = g.op('Unsqueeze', [g.op('Cast', [positionIds], { to: attr.int(1) }), g.int64s([-1])]);
  const freqs = g.op('Mul', [posF, invFreq]);
  const cos = g.op('Unsqueeze', [g.op('Cos', [freqs]), g.int64s([2])]);
  const sin = g.op('Unsqueeze', [g.op('Sin', [freqs]), g.int64s([2])]);
  return (x: string): string => {
    const [x1, x2] = g.node('Split', [x, g.int64s([D / 2, D / 2])], { axis: attr.int(-1) }, { outputs: [`${x}_h1`, `${x}_h2`] });
    if (!x1 || !x2) throw new Error('unreachable');
    const r1 = g.op('Sub', [g.op('Mul', [x1, cos]), g.op('Mul', [x2, sin])]);
    const r2 = g.op('Add', [g.op('Mul', [x2, cos]), g.op('Mul', [x1, sin])]);
    return g.op('Concat', [r1, r2], { axis: attr.int(-1) });
  };
}
