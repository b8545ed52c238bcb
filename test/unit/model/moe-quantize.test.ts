import assert from 'node:assert/strict';
import t from 'tap';
import { packBlockwise, roundTrip, unpackBlockwise } from '../../../src/model/compile/moe-quantize.js';
import { dequantize, quantizeBlockwise } from '../../../src/model/compile/quantize.js';
import { Rng } from '../../../src/model/create/prng.js';

function matrix(n: number, k: number, seed: number): Float32Array {
  const w = new Float32Array(n * k);
  new Rng(seed, 1).fillNormal(w, 0, 1);
  return w;
}

t.test('8 and 4 bits pack exactly as the dense quantizer (same MatMulNBits layout)', async () => {
  const w = matrix(6, 70, 1); // K not a multiple of the block: padding path
  for (const bits of [8, 4] as const) {
    const a = packBlockwise(w, 6, 70, bits, 32);
    const b = quantizeBlockwise(w, 6, 70, bits, 32);
    assert.deepEqual(a.codes, b.codes, `${bits}-bit codes`);
    assert.deepEqual(a.scales, b.scales);
    assert.deepEqual(unpackBlockwise(a), dequantize(b));
  }
});

t.test('2-bit codes: four per byte, low bits first, levels {-2,-1,0,1} x scale; error grows as bits shrink', async () => {
  const w = Float32Array.from([-4, -2, 0, 2, 1, 3, -1, 0.4]);
  const p = packBlockwise(w, 1, 8, 2, 8);
  assert.equal(p.codes.length, 2);
  assert.equal(p.scales[0], 2); // extreme -4 maps onto -2 x 2
  // q = round(v / 2) + 2 (JS rounding, half up), clamped to [0, 3]: [0, 1, 2, 3] and [3, 3, 2, 2]
  assert.equal(p.codes[0], 0 | (1 << 2) | (2 << 4) | (3 << 6));
  assert.equal(p.codes[1], 3 | (3 << 2) | (2 << 4) | (2 << 6));
  assert.deepEqual(Array.from(unpackBlockwise(p)), [-4, -2, 0, 2, 2, 2, 0, 0]);
  const big = matrix(32, 128, 2);
  const err = (bits: 2 | 4 | 8 | 32): number => {
    const r = roundTrip(big, 32, 128, bits, 32);
    let e = 0;
    let s = 0;
    for (let i = 0; i < big.length; i++) {
      e += (r[i]! - big[i]!) ** 2;
      s += big[i]! ** 2;
    }
    return e / s;
  };
  assert.equal(err(32), 0);
  assert.ok(err(8) < err(4) && err(4) < err(2), `${err(8)} ${err(4)} ${err(2)}`);
  assert.throws(() => packBlockwise(new Float32Array(3), 1, 4, 4, 32), /expected 1x4/);
});
