import t from 'tap';
import assert from 'node:assert/strict';
import { keptPositions, nextQueryPosition, rerotateKeys } from '../../../src/policies/positions.js';
import { randomArray, rng } from './helpers/synthetic-layer.js';

/** Hugging Face RoPE (rotate-half) at `pos`, angles float32(pos * invFreq) as the decoder graph computes them. */
function rope(x: Float32Array, base: number, d: number, pos: number, invFreq: Float32Array, out: Float32Array): void {
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const a = Math.fround(pos * invFreq[i]!);
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x1 = x[base + i]!;
    const x2 = x[base + i + half]!;
    out[base + i] = x1 * c - x2 * s;
    out[base + i + half] = x2 * c + x1 * s;
  }
}

function invFreq(d: number, theta = 10000): Float32Array {
  return Float32Array.from({ length: d / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / d));
}

t.test("rerotateKeys(p -> p') equals RoPE applied at p' directly (per-head positions, far apart)", async () => {
  const next = rng(31);
  const h = 3;
  const d = 16;
  const n = 20;
  const freq = invFreq(d);
  const raw = randomArray(n * h * d, next);
  const from = Int32Array.from({ length: h * n }, () => Math.floor(next() * 40000));
  const to = Int32Array.from({ length: h * n }, (_, i) => i % n);
  const rotated = new Float32Array(raw.length);
  const direct = new Float32Array(raw.length);
  for (let j = 0; j < n; j++) {
    for (let k = 0; k < h; k++) {
      rope(raw, (j * h + k) * d, d, from[k * n + j]!, freq, rotated);
      rope(raw, (j * h + k) * d, d, to[k * n + j]!, freq, direct);
    }
  }
  const moved = rerotateKeys(rotated, h, d, from, to, freq);
  let worst = 0;
  for (let i = 0; i < raw.length; i++) worst = Math.max(worst, Math.abs(moved[i]! - direct[i]!));
  assert.ok(worst < 1e-5, `max difference ${worst}`);
  // And back again.
  const back = rerotateKeys(moved, h, d, to, from, freq);
  for (let i = 0; i < raw.length; i++) assert.ok(Math.abs(back[i]! - rotated[i]!) < 1e-5);
});

t.test('rerotateKeys: shared positions for all heads; identity when unchanged; in place allowed', async () => {
  const next = rng(2);
  const h = 2;
  const d = 8;
  const n = 5;
  const freq = invFreq(d, 500000);
  const raw = randomArray(n * h * d, next);
  const at = (positions: number[]) => {
    const out = new Float32Array(raw.length);
    for (let j = 0; j < n; j++) for (let k = 0; k < h; k++) rope(raw, (j * h + k) * d, d, positions[j]!, freq, out);
    return out;
  };
  const from = [100, 250, 251, 900, 901];
  const to = [0, 1, 2, 3, 4];
  const keys = at(from);
  rerotateKeys(keys, h, d, Int32Array.from(from), Int32Array.from(to), freq, keys);
  const expected = at(to);
  for (let i = 0; i < raw.length; i++) assert.ok(Math.abs(keys[i]! - expected[i]!) < 1e-5);
  const same = rerotateKeys(expected, h, d, Int32Array.from(to), Int32Array.from(to), freq);
  assert.deepEqual([...same], [...expected]);
  assert.throws(() => rerotateKeys(keys, h, d, Int32Array.from([1, 2]), Int32Array.from(to), freq), /fromPositions has 2 values/);
  assert.throws(() => rerotateKeys(keys, h, d, Int32Array.from(from), Int32Array.from(to), Float32Array.from([...freq, 1])), /ropeInvFreq/);
});

t.test('positions after eviction: original keeps them, rolling renumbers within the cache', async () => {
  const positions = Int32Array.from([0, 1, 2, 7, 8, 9, 0, 1, 3, 6, 8, 9]);
  const plan = [Int32Array.from([0, 3, 5]), Int32Array.from([1, 2, 5])];
  assert.deepEqual([...keptPositions('original', positions, 6, plan)], [0, 7, 9, 1, 3, 9]);
  assert.deepEqual([...keptPositions('rolling', positions, 6, plan)], [0, 1, 2, 0, 1, 2]);
  assert.equal(nextQueryPosition('original', 1000, 3), 1000);
  assert.equal(nextQueryPosition('rolling', 1000, 3), 3);
});

t.test('rerotateKeys with partial rotary (Phi-3): only the first 2 * invFreq.length channels rotate, pairs i and i + rotary/2', async () => {
  const next = rng(5);
  const h = 2;
  const d = 16;
  const rot = 12;
  const n = 6;
  const freq = invFreq(rot);
  const raw = randomArray(n * h * d, next);
  const at = (pos: (j: number) => number): Float32Array => {
    const out = Float32Array.from(raw);
    // rope() over the first `rot` channels of each head; the other d - rot pass through.
    for (let j = 0; j < n; j++) for (let k = 0; k < h; k++) rope(raw, (j * h + k) * d, rot, pos(j), freq, out);
    return out;
  };
  const from = Int32Array.from({ length: n }, (_, j) => 100 + 7 * j);
  const to = Int32Array.from({ length: n }, (_, j) => j);
  const moved = rerotateKeys(
    at((j) => from[j]!),
    h,
    d,
    from,
    to,
    freq,
  );
  const direct = at((j) => j);
  let worst = 0;
  for (let i = 0; i < raw.length; i++) worst = Math.max(worst, Math.abs(moved[i]! - direct[i]!));
  assert.ok(worst < 1e-5, `max difference ${worst}`);
  assert.throws(() => rerotateKeys(raw, h, d, from, to, invFreq(2 * d)), /ropeInvFreq/);
});
