/**
 * KIVI's quantizer (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit
 * Quantization for KV Cache", github.com/jy-yuan/KIVI), over one sequence's
 * head-major cache [numKvHeads, capacity, headDim]:
 * - keys per channel: each channel of each KV head gets its own scale and zero
 *   point over a group of `groupSize` consecutive tokens (outlier channels stay
 *   inside their own range);
 * - values per token: each token of each KV head gets its own scale and zero
 *   point over its headDim channels;
 * - asymmetric b-bit codes: scale = (max - min) / (2^b - 1), zero = min,
 *   q = clamp(round((x - min) / scale), 0, 2^b - 1), x' = q * scale + min;
 * - the newest `residual` tokens stay in full precision; keys are quantized a
 *   whole group at a time once a group has `residual` newer tokens after it, so
 *   between residual and residual + groupSize - 1 key entries are full precision.
 * The quantized entries are written back dequantized (what attention reads from
 * a KIVI cache), so the graph is unchanged; only entries that just left the
 * residual are touched on a step, never the whole cache.
 */
import { fromHalf, toHalf, type KvArray } from '../../kv/kv-dtype.js';

/** Largest error of a round trip: half a quantization step of the range [min, max]. */
export function maxRoundTripError(min: number, max: number, bits: number): number {
  return (max - min) / ((1 << bits) - 1) / 2;
}

/**
 * Quantizes `count` elements of `buf` starting at `offset`, `stride` apart, to
 * `bits`-bit asymmetric codes sharing one scale and zero point, and writes back
 * their dequantized values (float16 buffers are read and written as half floats).
 */
export function quantizeRun(buf: KvArray, offset: number, count: number, stride: number, bits: number): void {
  const half = buf instanceof Uint16Array;
  const read = (i: number): number => (half ? fromHalf(buf[i] ?? 0) : (buf[i] ?? 0));
  let min = Infinity;
  let max = -Infinity;
  for (let k = 0, i = offset; k < count; k++, i += stride) {
    const x = read(i);
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const levels = (1 << bits) - 1;
  const scale = (max - min) / levels;
  if (!(scale > 0)) return; // a constant run is exact
  for (let k = 0, i = offset; k < count; k++, i += stride) {
    const q = Math.min(levels, Math.max(0, Math.round((read(i) - min) / scale)));
    const x = q * scale + min;
    if (half) buf[i] = toHalf(x);
    else buf[i] = x;
  }
}

export interface KiviConfig {
  readonly bits: number;
  readonly groupSize: number;
  readonly residual: number;
}

/** Per layer, how many leading entries are quantized (keys in whole groups, values per token). */
export class KiviLayerState {
  keysQuantized = 0;
  valuesQuantized = 0;
}

/**
 * Quantizes what left the residual in one layer of length `length`, capacity
 * `capacity` (keys and values head-major, `heads` x `headDim`); returns the
 * entries newly quantized (keys, values).
 */
export function advanceLayer(
  state: KiviLayerState,
  keys: KvArray,
  values: KvArray,
  shape: { readonly heads: number; readonly headDim: number; readonly capacity: number; readonly length: number },
  config: KiviConfig,
): { keys: number; values: number } {
  const { heads, headDim: D, capacity, length } = shape;
  const { bits, groupSize: G, residual: R } = config;
  let keysDone = 0;
  while (length - state.keysQuantized >= R + G) {
    const start = state.keysQuantized;
    for (let h = 0; h < heads; h++) {
      const base = (h * capacity + start) * D;
      for (let c = 0; c < D; c++) quantizeRun(keys, base + c, G, D, bits);
    }
    state.keysQuantized += G;
    keysDone += G;
  }
  let valuesDone = 0;
  while (length - state.valuesQuantized > R) {
    const e = state.valuesQuantized;
    for (let h = 0; h < heads; h++) quantizeRun(values, (h * capacity + e) * D, D, 1, bits);
    state.valuesQuantized += 1;
    valuesDone += 1;
  }
  return { keys: keysDone, values: valuesDone };
}

/**
 * Bytes per cached token, per layer and KV head, of a KIVI cache stored packed
 * (b-bit codes; fp16 scale and zero per key channel per group and per value
 * token), ignoring the full-precision residual: what the method would allocate,
 * computed, not measured.
 */
export function packedBytesPerEntry(headDim: number, config: KiviConfig): number {
  const codes = (2 * headDim * config.bits) / 8;
  const keyParams = (2 * 2 * headDim) / config.groupSize;
  const valueParams = 2 * 2;
  return codes + keyParams + valueParams;
}
