import { randomInt } from 'node:crypto';

/** A source of uniform floats in [0, 1). Samplers depend on this, not on a concrete generator. */
export interface Rng {
  nextFloat(): number;
}

const MASK64 = (1n << 64n) - 1n;

/**
 * One step of splitmix64: returns [output, nextState]. Used only to expand a
 * user seed into xoshiro state (its outputs are well mixed even for seeds
 * 0, 1, 2, ..., which xoshiro's own state must not be fed raw).
 */
export function splitmix64(state: bigint): [bigint, bigint] {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [z ^ (z >> 31n), next];
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * xoshiro128** (Blackman & Vigna): 128-bit state, plain 32-bit integer ops, so
 * it runs without BigInt or allocation per draw. Seeding goes through
 * splitmix64, as its authors recommend.
 */
export class Xoshiro128 implements Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  private constructor(s0: number, s1: number, s2: number, s3: number) {
    if ((s0 | s1 | s2 | s3) === 0) throw new RangeError('xoshiro128** state must not be all zero');
    this.#s0 = s0 | 0;
    this.#s1 = s1 | 0;
    this.#s2 = s2 | 0;
    this.#s3 = s3 | 0;
  }

  /** Any safe integer (negative too, as OpenAI seeds are int64) maps to its own stream. */
  static fromSeed(seed: number): Xoshiro128 {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(`seed must be a safe integer, got ${String(seed)}`);
    }
    let state = BigInt.asUintN(64, BigInt(seed));
    const words: number[] = [];
    for (let i = 0; i < 2; i++) {
      const [out, next] = splitmix64(state);
      state = next;
      words.push(Number(out & 0xffffffffn), Number(out >> 32n));
    }
    const [a = 0, b = 0, c = 0, d = 0] = words;
    // splitmix64 never yields two consecutive zero outputs in practice; keep the invariant anyway.
    return (a | b | c | d) === 0 ? new Xoshiro128(1, 0, 0, 0) : new Xoshiro128(a, b, c, d);
  }

  /** Direct state, for reproducing reference vectors. */
  static fromState(s0: number, s1: number, s2: number, s3: number): Xoshiro128 {
    return new Xoshiro128(s0, s1, s2, s3);
  }

  /** Unsigned 32-bit output. */
  nextUint32(): number {
    const s0 = this.#s0;
    const s1 = this.#s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    let s2 = this.#s2 ^ s0;
    let s3 = this.#s3 ^ s1;
    this.#s1 = s1 ^ s2;
    this.#s0 = s0 ^ s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    this.#s2 = s2;
    this.#s3 = s3;
    return result;
  }

  /** 53 random bits from two draws, so every double in [0, 1) on the 2^-53 grid is reachable. */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

/** The generator for a request: seeded when the request says so, otherwise from the OS entropy pool. */
export function createRng(seed: number | null): Rng {
  return Xoshiro128.fromSeed(seed ?? randomInt(0, 2 ** 48 - 1));
}
