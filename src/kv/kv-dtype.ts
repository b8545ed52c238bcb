/**
 * The KV cache's storage element type. `fp32` stores Float32Array; `fp16` stores
 * IEEE half floats as their bit patterns in a Uint16Array (half the bytes per
 * token), which the decoder graph reads as float16 and casts to float32 before
 * attention, so nothing on the JS side expands the cache per step. Conversion
 * happens only where entries enter the cache (the new tokens of a pass) or where
 * a policy reads them as numbers (eviction scores, Quest page bounds).
 */
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

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> float16 bits, round to nearest even; overflow to +-inf, NaN kept. */
export function toHalf(x: number): number {
  f32[0] = x;
  const b = u32[0] ?? 0;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1) === 1)) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half += 1; // may carry into the exponent: still correct
  return sign | half;
}

let table: Float32Array | null = null;

/** float16 bits -> number (a 64K-entry table, built on first use). */
export function fromHalf(h: number): number {
  table ??= buildTable();
  return table[h & 0xffff] ?? 0;
}

function buildTable(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = halfValue(h);
  return t;
}

function halfValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Copies n elements src[srcOff..] to dst[dstOff..], converting between float32 and float16 bits when the types differ. */
export function copyKv(dst: KvArray, dstOff: number, src: KvArray, srcOff: number, n: number): void {
  if (dst instanceof Float32Array && src instanceof Float32Array) dst.set(src.subarray(srcOff, srcOff + n), dstOff);
  else if (dst instanceof Uint16Array && src instanceof Uint16Array) dst.set(src.subarray(srcOff, srcOff + n), dstOff);
  else if (dst instanceof Uint16Array) for (let i = 0; i < n; i++) dst[dstOff + i] = toHalf(src[srcOff + i] ?? 0);
  else for (let i = 0; i < n; i++) dst[dstOff + i] = fromHalf(src[srcOff + i] ?? 0);
}

/** The buffer as float32 values: itself when it already is, a converted copy otherwise. */
export function kvAsFloat(a: KvArray): Float32Array {
  if (a instanceof Float32Array) return a;
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = fromHalf(a[i] ?? 0);
  return out;
}
