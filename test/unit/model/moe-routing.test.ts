import assert from 'node:assert/strict';
import t from 'tap';
import { routeRows } from '../../../src/model/moe-routing.js';
import { routeTopK } from '../../reference/forward.js';

t.test('routing groups rows by expert with the reference top-k weights (renormalised or not)', async () => {
  const E = 6;
  const rows = 5;
  const logits = Float32Array.from({ length: rows * E }, (_, i) => Math.sin(i * 1.7) * 3);
  for (const norm of [true, false]) {
    const groups = routeRows(logits, rows, E, 2, norm);
    assert.deepEqual(
      groups.map((g) => g.expert),
      [...groups.map((g) => g.expert)].sort((a, b) => a - b),
    );
    for (let r = 0; r < rows; r++) {
      const want = routeTopK(Float64Array.from(logits.subarray(r * E, (r + 1) * E)), 2, norm);
      want.experts.forEach((e, j) => {
        const g = groups.find((x) => x.expert === e);
        assert.ok(g, `row ${r} expert ${e}`);
        const at = g.rows.indexOf(r);
        assert.ok(at >= 0);
        assert.ok(Math.abs(g.weights[at]! - want.weights[j]!) < 1e-12);
      });
    }
    assert.equal(
      groups.reduce((s, g) => s + g.rows.length, 0),
      rows * 2,
    );
  }
});

t.test('ties go to the lower expert index, as in the reference', async () => {
  const groups = routeRows(Float32Array.of(1, 1, 1, 0), 1, 4, 2, true);
  assert.deepEqual(
    groups.map((g) => g.expert),
    [0, 1],
  );
  assert.deepEqual(
    groups.map((g) => g.weights[0]),
    [0.5, 0.5],
  );
});
