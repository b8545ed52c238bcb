/**
 * RoPE inverse frequencies, computed exactly as Hugging Face transformers does
 * (modeling_rope_utils: default, linear and llama3), so positions line up with
 * checkpoints trained there.
 */
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
