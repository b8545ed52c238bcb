/**
 * STI's shard layout: every weight of a layer's four matrices belongs to exactly
 * one shard, fp32 shards reassemble the matrices exactly, quantized shards
 * decode to what moe-quantize's unpack says, and file sizes are what encoding writes.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { packBlockwise, unpackBlockwise } from '../../../src/model/compile/moe-quantize.js';
import {
  allocLayer,
  assembleInto,
  encodeShard,
  extractShard,
  shardBlockSize,
  shardFileBytes,
  shardLayout,
  shardParts,
} from '../../../src/model/compile/sti-shards.js';
import type { ModelSpec } from '../../../src/model/spec.js';

const spec = { numLayers: 2, numHeads: 6, numKvHeads: 3, headDim: 4, hiddenSize: 12, intermediateSize: 37 } as unknown as ModelSpec;

function randomLayer(seed: number): ReturnType<typeof allocLayer> {
  const m = allocLayer(spec);
  let x = seed;
  for (const a of [m.qkv, m.o, m.gateUp, m.down]) for (let i = 0; i < a.length; i++) a[i] = ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  return m;
}

t.test('shards tile the layer: fp32 shards reassemble every matrix exactly', async () => {
  const m = randomLayer(7);
  const out = allocLayer(spec);
  for (const a of [out.qkv, out.o, out.gateUp, out.down]) a.fill(Number.NaN);
  const layer0 = shardLayout(spec).filter((s) => s.layer === 0);
  assert.equal(layer0.length, 3 + 3);
  for (const s of layer0) {
    const bytes = encodeShard(spec, s, extractShard(spec, s, m), 32);
    assert.equal(bytes.byteLength, shardFileBytes(spec, s, 32));
    assembleInto(spec, s, 32, bytes, out);
  }
  assert.deepEqual(out, m);
});

t.test('quantized shards decode to what their codes stand for', async () => {
  const m = randomLayer(9);
  for (const bits of [8, 4, 2] as const) {
    const out = allocLayer(spec);
    for (const s of shardLayout(spec).filter((x) => x.layer === 1)) {
      const parts = extractShard(spec, s, m);
      const bytes = encodeShard(spec, s, parts, bits);
      assert.equal(bytes.byteLength, shardFileBytes(spec, s, bits));
      const one = allocLayer(spec);
      assembleInto(spec, s, bits, bytes, one);
      const got = extractShard(spec, s, one);
      got.forEach((g, i) => {
        const [n, k] = shardParts(spec, s)[i] ?? [0, 0];
        assert.deepEqual(g, unpackBlockwise(packBlockwise(parts[i]!, n, k, bits, shardBlockSize(k))), `${s.kind}${s.index} part ${i} at ${bits} bits`);
      });
      assembleInto(spec, s, bits, bytes, out);
    }
    assert.ok(out.down.every(Number.isFinite));
  }
});
