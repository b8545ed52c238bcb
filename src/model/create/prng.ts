/**
 * Seeded random numbers for the model generator. Only integer ops and IEEE basic
 * arithmetic are used (no Math.log/cos), so the same seed gives the same bytes on
 * every platform and Node version.
 */

/** FNV-1a over the UTF-16 code units of a string: a stable per-tensor stream id. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** sfc32 seeded through splitmix32 so nearby seeds give unrelated streams. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, stream = 0) {
    let s = (Math.trunc(seed) ^ Math.imul(stream, 0x9e3779b9)) >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /**
   * Fills out with approximately normal values (Irwin-Hall sum of four 16-bit
   * uniforms, standardized): mean `mean`, standard deviation `std`.
   */
  fillNormal(out: Float32Array, mean: number, std: number): void {
    const center = 4 * 32767.5;
    const scale = std / Math.sqrt((4 * (65536 * 65536 - 1)) / 12);
    // nextU32 inlined on locals: this loop makes every weight of a generated model.
    let { a, b, c, d } = this;
    for (let i = 0; i < out.length; i++) {
      let t = (((a + b) >>> 0) + d) >>> 0;
      d = (d + 1) >>> 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) >>> 0;
      c = (((c << 21) | (c >>> 11)) + t) >>> 0;
      const x = t;
      t = (((a + b) >>> 0) + d) >>> 0;
      d = (d + 1) >>> 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) >>> 0;
      c = (((c << 21) | (c >>> 11)) + t) >>> 0;
      const sum = (x & 0xffff) + (x >>> 16) + (t & 0xffff) + (t >>> 16);
      out[i] = mean + (sum - center) * scale;
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
  }
}
