/**
 * The KV cache's storage element type. `fp32` stores Float32Array; `fp16` stores
 * IEEE half floats as their bit patterns in a Uint16Array (half the bytes per
 * token), which the decoder graph reads as float16 and casts to float32 before
 * attention, so nothing on the JS side expands the cache per step. Conversion
 * happens only where entries enter the cache (the new tokens of a pass) or where
 * a policy reads them as numbers (eviction scores, Quest page bounds).
 */
import { f16ToF32, f32ToF16 } from '../model/dtype.js';
import type { KvDtype } from '../model/step-io.js';

export type { KvDtype } from '../model/step-io.js';

export const KV_DTYPES: readonly KvDtype[] = ['fp32', 'fp16'];

/** What a layer's key or value buffer holds: float32 values, or float16 bit patterns. */
export type KvArray = Float32Array | Uint16Array;

export function kvElementBytes(dtype: KvDtype): number {
  return dtype === 'fp16' ? 2 : 4;
}

export function allocKv(dtype: KvDtype, length: number): KvArray {
  return dtype === 'fp16' ? new Uint16Array(length) : new Float32Array(length);
}

/** float32 -> float16 bits, round to nearest even; overflow to +-inf, NaN kept (model/dtype.ts's conversion). */
export const toHalf: (x: number) => number = f32ToF16;

/** float16 bits -> number (a 64K-entry table, built on first use). */
export const fromHalf: (h: number) => number = f16ToF32;

/**
 * Below this many elements a copy is a plain loop: `set(subarray())` allocates a view per call,
 * and a decode step makes thousands of one-entry copies (135m, 32 rows: 11,520 of 64 elements,
 * about 12 ms a step and most of the worker's garbage).
 */
const LOOP_COPY_MAX = 512;

/** Copies n elements src[srcOff..] to dst[dstOff..], converting between float32 and float16 bits when the types differ. */
export function copyKv(dst: KvArray, dstOff: number, src: KvArray, srcOff: number, n: number): void {
  if (dst instanceof Float32Array === src instanceof Float32Array) {
    if (n <= LOOP_COPY_MAX) for (let i = 0; i < n; i++) dst[dstOff + i] = src[srcOff + i] ?? 0;
    else if (dst instanceof Float32Array && src instanceof Float32Array) dst.set(src.subarray(srcOff, srcOff + n), dstOff);
    else if (dst instanceof Uint16Array && src instanceof Uint16Array) dst.set(src.subarray(srcOff, srcOff + n), dstOff);
  } else if (dst instanceof Uint16Array) for (let i = 0; i < n; i++) dst[dstOff + i] = toHalf(src[srcOff + i] ?? 0);
  else for (let i = 0; i < n; i++) dst[dstOff + i] = fromHalf(src[srcOff + i] ?? 0);
}

/** The buffer as float32 values: itself when it already is, a converted copy otherwise. */
export function kvAsFloat(a: KvArray): Float32Array {
  if (a instanceof Float32Array) return a;
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = fromHalf(a[i] ?? 0);
  return out;
}
