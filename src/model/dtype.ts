/**
 * Float conversions between safetensors' storage dtypes and float32. Encoders round
 * to nearest even, as torch does, so a round trip through our writer matches what
 * torch would have stored.
 */
export type StorageDtype = 'F32' | 'F16' | 'BF16';

export const STORAGE_DTYPES: readonly StorageDtype[] = ['F32', 'F16', 'BF16'];

export const DTYPE_BYTES: Readonly<Record<StorageDtype, number>> = { F32: 4, F16: 2, BF16: 2 };

/** Byte sizes of the safetensors dtypes we do not convert, so their byte ranges can still be validated. */
export const OTHER_DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8,
  I64: 8,
  U64: 8,
  I32: 4,
  U32: 4,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

export function isStorageDtype(s: string): s is StorageDtype {
  return s === 'F32' || s === 'F16' || s === 'BF16';
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

let f16Table: Float32Array | null = null;

function buildF16Table(): Float32Array {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    let v: number;
    if (exp === 0) v = mant * 2 ** -24;
    else if (exp === 0x1f) v = mant === 0 ? Infinity : NaN;
    else v = (1 + mant / 1024) * 2 ** (exp - 15);
    table[h] = sign * v;
  }
  return table;
}

/** One float16 bit pattern as a number (the same 64K-entry table). */
export function f16ToF32(h: number): number {
  const table = (f16Table ??= buildF16Table());
  return table[h & 0xffff]!;
}

export function f16ToF32Array(src: Uint16Array, dst: Float32Array): void {
  const table = (f16Table ??= buildF16Table());
  for (let i = 0; i < src.length; i++) dst[i] = table[src[i]!]!;
}

export function bf16ToF32Array(src: Uint16Array, dst: Float32Array): void {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
}

export function f32ToF16(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  // A carry out of the mantissa bumps the exponent, which is the correct rounding (up to inf).
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

export function f32ToBf16(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f32ToF16Array(src: Float32Array, dst: Uint16Array): void {
  for (let i = 0; i < src.length; i++) dst[i] = f32ToF16(src[i]!);
}

export function f32ToBf16Array(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) dst[i] = ((x >>> 16) | 0x40) & 0xffff;
    else dst[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
}
