import t from 'tap';
import assert from 'node:assert/strict';
import { attentionMassRetained } from '../../../../src/policies/kv-eviction/retained-mass.js';
import { makeView } from '../helpers/synthetic-layer.js';

t.test("attention mass retained: kept share of the newest query's attention, averaged over KV heads", async () => {
  // Two KV heads, one query head each; head 0 keeps 0.7 of its mass, head 1 keeps 0.4.
  const last = Float32Array.from([0.5, 0.2, 0.3, 0.1, 0.6, 0.3]);
  const view = makeView({ numKvHeads: 2, length: 3, lastQueryAttention: last });
  const mass = attentionMassRetained(view, [Int32Array.from([0, 1]), Int32Array.from([0, 2])]);
  assert.ok(mass !== null && Math.abs(mass - (0.7 + 0.4) / 2) < 1e-6, String(mass));
  // Falls back to the accumulated attention; null without statistics; 1 when everything is kept.
  const acc = makeView({ numKvHeads: 1, length: 4, accumulatedAttention: Float32Array.from([1, 1, 2, 0]) });
  assert.equal(attentionMassRetained(acc, [Int32Array.from([2, 3])]), 0.5);
  assert.equal(attentionMassRetained(acc, [Int32Array.from([0, 1, 2, 3])]), 1);
  assert.equal(attentionMassRetained(makeView({ numKvHeads: 1, length: 4 }), [Int32Array.from([0])]), null);
});
