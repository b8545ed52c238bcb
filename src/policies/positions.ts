/**
 * Positions after eviction. kvpress keeps each kept entry's original position
 * ('original': keys stay rotated as they were, the next token continues at its
 * true position). StreamingLLM assigns positions within the cache ('rolling':
 * kept entries become 0..k-1, keys are re-rotated to match, the next token sits
 * at k), which is what keeps a model inside its trained range forever.
 */
import { PolicyError } from './errors.js';
import type { PositionMode } from './method-types.js';
import type { KeepPlan } from './types.js';

/**
 * Positions of the kept entries [numKvHeads * kept], per head: the gathered old
 * positions ('original') or 0..kept-1 ('rolling').
 */
export function keptPositions(mode: PositionMode, positions: Int32Array, length: number, plan: KeepPlan): Int32Array {
  const heads = plan.length;
  const kept = plan[0]?.length ?? 0;
  if (positions.length !== heads * length)
    throw new PolicyError(`keptPositions: positions has ${positions.length} values, expected numKvHeads * length = ${heads} * ${length}`);
  const out = new Int32Array(heads * kept);
  for (let h = 0; h < heads; h++) {
    const idx = plan[h];
    if (idx === undefined || idx.length !== kept) throw new PolicyError(`keptPositions: head ${h} keeps ${idx?.length ?? 0} entries, head 0 keeps ${kept}`);
    for (let i = 0; i < kept; i++) out[h * kept + i] = mode === 'rolling' ? i : (positions[h * length + (idx[i] ?? 0)] ?? 0);
  }
  return out;
}

/** RoPE position of the next token: the cache length when rolling, its true position otherwise. */
export function nextQueryPosition(mode: PositionMode, contextTokens: number, cacheLength: number): number {
  return mode === 'rolling' ? cacheLength : contextTokens;
}

/**
 * Re-rotates post-RoPE keys [length, numKvHeads, headDim] (Hugging Face
 * rotate-half layout over the first rotaryDim = 2 * ropeInvFreq.length channels:
 * channel i pairs with i + rotaryDim/2, channels past rotaryDim are not rotated,
 * as with partial_rotary_factor) from their old positions to new ones: a
 * rotation by the difference of the two angles.
 * Angles are taken as float32(position * invFreq), as the decoder graph computes
 * them, so the result equals RoPE applied at the new position directly.
 * Positions are [length] (shared by the heads) or [numKvHeads * length] (per head).
 */
export function rerotateKeys(
  keys: Float32Array,
  numKvHeads: number,
  headDim: number,
  fromPositions: Int32Array,
  toPositions: Int32Array,
  ropeInvFreq: Float32Array,
  out: Float32Array = new Float32Array(keys.length),
): Float32Array {
  const stride = numKvHeads * headDim;
  const length = keys.length / stride;
  const half = ropeInvFreq.length;
  if (headDim % 2 !== 0 || !Number.isInteger(length))
    throw new PolicyError(`rerotateKeys: keys (${keys.length} values) are not [length, ${numKvHeads}, ${headDim}] with an even headDim`);
  if (half === 0 || 2 * half > headDim)
    throw new PolicyError(`rerotateKeys: ropeInvFreq has ${ropeInvFreq.length} values, expected 1 to headDim / 2 = ${headDim >> 1}`);
  const perHead = (a: Int32Array, name: string): boolean => {
    if (a.length === length) return false;
    if (a.length === numKvHeads * length) return true;
    throw new PolicyError(`rerotateKeys: ${name} has ${a.length} values, expected length (${length}) or numKvHeads * length (${numKvHeads * length})`);
  };
  const fromPerHead = perHead(fromPositions, 'fromPositions');
  const toPerHead = perHead(toPositions, 'toPositions');
  if (out.length < keys.length) throw new PolicyError(`rerotateKeys: out holds ${out.length} values, fewer than ${keys.length}`);
  for (let j = 0; j < length; j++) {
    for (let h = 0; h < numKvHeads; h++) {
      const from = fromPositions[fromPerHead ? h * length + j : j] ?? 0;
      const to = toPositions[toPerHead ? h * length + j : j] ?? 0;
      const base = j * stride + h * headDim;
      if (from === to) {
        if (out !== keys) out.set(keys.subarray(base, base + headDim), base);
        continue;
      }
      for (let i = 0; i < half; i++) {
        const f = ropeInvFreq[i] ?? 0;
        const angle = Math.fround(to * f) - Math.fround(from * f);
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        const x1 = keys[base + i] ?? 0;
        const x2 = keys[base + i + half] ?? 0;
        out[base + i] = x1 * c - x2 * s;
        out[base + i + half] = x2 * c + x1 * s;
      }
      if (out !== keys && 2 * half < headDim) out.set(keys.subarray(base + 2 * half, base + headDim), base + 2 * half);
    }
  }
  return out;
}
