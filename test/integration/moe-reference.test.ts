/**
 * The MoE runner against the float64 reference (test/reference/forward.ts) on
 * generated mixtral, qwen2_moe and qwen3_moe (q/k norms, no shared expert) checkpoints, with every expert resident and
 * with every expert streamed from disk (budget 0), and the fp32 offload
 * guarantee: any budget, any cache policy, prefetch on or off, gives exactly the
 * resident model's logits.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import type { Architecture } from '../../src/model/spec.js';
import { ReferenceModel } from '../reference/forward.js';
import { maxAbsDiff } from '../helpers/session.js';
import { moeFixture, promptIds, runSequence, type MoeFixture } from './moe-helpers.js';

const PROMPT = 24;
const DECODE = [5, 12, 19, 26, 33, 40];

function compareToReference(f: MoeFixture, rows: Float32Array[]): { relErr: number; agree: number } {
  const spec = f.checkpoint.spec;
  const ref = new ReferenceModel(spec, f.checkpoint.weights);
  const want = [...ref.append(promptIds(PROMPT, spec.vocabSize)), ...ref.append(DECODE)];
  let maxDiff = 0;
  let maxRef = 0;
  let agree = 0;
  rows.forEach((got, i) => {
    const w = want[i];
    if (!w) throw new Error('reference row missing');
    let ga = 0;
    let wa = 0;
    for (let v = 0; v < w.length; v++) {
      maxDiff = Math.max(maxDiff, Math.abs(got[v]! - w[v]!));
      maxRef = Math.max(maxRef, Math.abs(w[v]!));
      if (got[v]! > got[ga]!) ga = v;
      if (w[v]! > w[wa]!) wa = v;
    }
    if (ga === wa) agree += 1;
  });
  return { relErr: maxDiff / maxRef, agree };
}

for (const [i, arch] of (['mixtral', 'qwen2_moe', 'qwen3_moe'] as Architecture[]).entries()) {
  t.test(`${arch}: resident and offloaded runners match the float64 reference; fp32 offload is exact at every budget`, async (t) => {
    const f = await moeFixture(arch, 40 + i);
    const ids = promptIds(PROMPT, f.checkpoint.spec.vocabSize);
    const resident = await f.open({ preload: true });
    const base = await runSequence(f, resident, ids, DECODE);
    const rs = resident.stats();
    assert.equal(rs['expertCacheMisses'], 0, 'preloaded runner should never miss');
    await resident.release();
    const r = compareToReference(f, base);
    t.comment(`${arch} resident: max |diff| / max |logit| = ${r.relErr.toExponential(2)}, top-1 ${r.agree}/${base.length}`);
    assert.ok(r.relErr <= 1e-4, `relative error ${r.relErr}`);
    assert.equal(r.agree, base.length);

    const expertBytes = resident.manifest.experts.find((e) => e.bits === 32)?.bytes ?? 0;
    for (const cfg of [
      { budgetBytes: 0, cachePolicy: 'lru' as const, prefetch: false },
      { budgetBytes: expertBytes, cachePolicy: 'lru' as const, prefetch: true },
      { budgetBytes: 3 * expertBytes, cachePolicy: 'frequency' as const, prefetch: true },
      { budgetBytes: 3 * expertBytes + 17, cachePolicy: 'lru' as const, prefetch: false },
    ]) {
      const runner = await f.open(cfg);
      const rows = await runSequence(f, runner, ids, DECODE, () => {
        const s = runner.stats();
        assert.ok(s['expertResidentBytes']! <= cfg.budgetBytes, `resident ${s['expertResidentBytes']} > budget ${cfg.budgetBytes}`);
      });
      const s = runner.stats();
      await runner.release();
      let diff = 0;
      rows.forEach((row, j) => (diff = Math.max(diff, maxAbsDiff(row, base[j]!))));
      t.comment(
        `${arch} ${JSON.stringify(cfg)}: max |diff| vs resident ${diff}, hits ${s['expertCacheHits']}, misses ${s['expertCacheMisses']}, prefetch hits ${s['expertPrefetchHits']}, bytes loaded ${s['expertBytesLoaded']}, prediction accuracy ${s['expertPredictionAccuracy']?.toFixed(2)}`,
      );
      assert.ok(diff <= 1e-5, `offloaded logits differ from resident by ${diff}`);
      assert.ok(s['expertResidentBytesPeak']! <= cfg.budgetBytes);
      assert.ok(s['expertBytesLoaded']! > 0);
    }
  });
}

t.test('int8 non-expert weights (attention, shared expert, head) stay within the dense int8 tolerance of the reference', async (t) => {
  const f = await moeFixture('qwen2_moe', 43, { weightDtype: 'int8' });
  const runner = await f.open({ preload: true });
  const rows = await runSequence(f, runner, promptIds(PROMPT, f.checkpoint.spec.vocabSize), DECODE);
  await runner.release();
  const r = compareToReference(f, rows);
  t.comment(`qwen2_moe int8 non-experts, fp32 experts: max |diff| / max |logit| = ${r.relErr.toExponential(2)}, top-1 ${r.agree}/${rows.length}`);
  assert.ok(r.relErr <= 0.05, `relative error ${r.relErr}`);
  assert.ok(r.agree / rows.length >= 0.9);
});
