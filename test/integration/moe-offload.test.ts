/**
 * Expert offload beyond fp32 exactness: quantized expert graphs (int8/int4/int2)
 * against the reference on dequantized weights, adaptive bitwidths under a byte
 * target with the budget checked after every step, prediction and prefetch
 * actually used, and missing or corrupt expert files failing with the file named.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { roundTrip, type ExpertBits } from '../../src/model/compile/moe-quantize.js';
import type { WeightSource } from '../../src/model/spec.js';
import { resolveEdgeMoe } from '../../src/policies/expert-offload/edgemoe.js';
import { MoeRunnerError } from '../../src/runtime/moe-expert-store.js';
import { openMoeRunner, parseEdgeMoeParams } from '../../src/engine/moe-runner-factory.js';
import { ReferenceModel } from '../reference/forward.js';
import { moeFixture, promptIds, runSequence } from './moe-helpers.js';

const DECODE = [7, 14, 21, 28];

/** The checkpoint with every routed expert replaced by what its `bits` codes stand for. */
function dequantizedExperts(weights: WeightSource, bits: ExpertBits): WeightSource {
  const expert = /\.experts\.\d+\.(w1|w2|w3|gate_proj|up_proj|down_proj)\.weight$/;
  return {
    names: () => weights.names(),
    has: (n) => weights.has(n),
    get: (n) => {
      const t = weights.get(n);
      if (!expert.test(n)) return t;
      const [rows, cols] = t.shape;
      if (rows === undefined || cols === undefined) throw new Error(`${n} is not a matrix`);
      return { shape: t.shape, data: roundTrip(t.data, rows, cols, bits, 32) };
    },
  };
}

t.test('int8/int4/int2 expert graphs compute exactly what their dequantized weights say (fp32 activations)', async (t) => {
  const f = await moeFixture('qwen2_moe', 11, { quantAccuracyLevel: 0 });
  const spec = f.checkpoint.spec;
  const ids = promptIds(16, spec.vocabSize);
  for (const bits of [8, 4, 2] as const) {
    const runner = await f.open({ budgetBytes: 1 << 20 });
    runner.configure(() => bits);
    const rows = await runSequence(f, runner, ids, DECODE);
    await runner.release();
    const ref = new ReferenceModel(spec, dequantizedExperts(f.checkpoint.weights, bits));
    const want = [...ref.append(ids), ...ref.append(DECODE)];
    let maxDiff = 0;
    let maxRef = 0;
    rows.forEach((got, i) => {
      for (let v = 0; v < got.length; v++) {
        maxDiff = Math.max(maxDiff, Math.abs(got[v]! - want[i]![v]!));
        maxRef = Math.max(maxRef, Math.abs(want[i]![v]!));
      }
    });
    t.comment(`int${bits} experts vs dequantized reference: max |diff| / max |logit| = ${(maxDiff / maxRef).toExponential(2)}`);
    assert.ok(maxDiff / maxRef <= 1e-4, `int${bits}: relative error ${maxDiff / maxRef}`);
  }
});

t.test('adaptive bitwidths: widths follow importance under the byte target; budget never exceeded; prefetch used', async (t) => {
  const f = await moeFixture('mixtral', 12);
  const spec = f.checkpoint.spec;
  const probe = await f.open({ budgetBytes: 0 });
  const fp32Bytes = probe.manifest.experts.filter((e) => e.bits === 32).reduce((s, e) => s + e.bytes, 0);
  await probe.release();
  const budget = Math.floor(fp32Bytes / 4);
  // The adapted expert set may take twice the cache, so experts still come and go and prefetch has work.
  const config = resolveEdgeMoe(parseEdgeMoeParams({ budgetBytes: budget, adaptBytes: 2 * budget, bitsChoices: [4, 8, 32], calibrationTokens: 64 }));
  const runner = await openMoeRunner(f.compiled, spec, { threads: 1, config, tokenizer: f.checkpoint.tokenizer });
  const s0 = runner.stats();
  t.comment(
    `experts at 32/8/4 bits: ${s0['expertsAt32Bits']}/${s0['expertsAt8Bits']}/${s0['expertsAt4Bits']}, store ${s0['expertStoreBytes']} bytes, target ${2 * budget}, predicted error ${s0['expertAdaptedError']?.toExponential(2)}`,
  );
  assert.ok(s0['expertStoreBytes']! <= 2 * budget, 'adapted expert set exceeds its byte target');
  assert.ok(s0['expertResidentBytes']! > 0 && s0['expertResidentBytes']! <= budget, 'warm start fills the cache within the budget');
  const n = spec.numLayers * (spec.moe?.numExperts ?? 0);
  assert.ok([32, 8, 4].filter((b) => s0[`expertsAt${b}Bits`]! > 0).length >= 2 && s0['expertsAt32Bits']! < n, 'expected a mix of widths');
  assert.ok(
    readdirSync(f.compiled.dir).some((n) => n.startsWith('expert-profile-')),
    'profile cached next to the compiled model',
  );
  const rows = await runSequence(f, runner, promptIds(32, spec.vocabSize), [...DECODE, ...DECODE], () => {
    assert.ok(runner.stats()['expertResidentBytes']! <= budget);
  });
  const s = runner.stats();
  await runner.release();
  t.comment(
    `hits ${s['expertCacheHits']}, misses ${s['expertCacheMisses']}, prefetch hits ${s['expertPrefetchHits']} of ${s['expertPrefetchIssued']} issued, prediction accuracy ${s['expertPredictionAccuracy']?.toFixed(2)}, stall ${s['expertLoadStallMs']?.toFixed(1)} ms`,
  );
  assert.ok(s['expertResidentBytesPeak']! <= budget);
  assert.ok(s['expertPrefetchIssued']! > 0);
  assert.ok(s['expertPredictionAccuracy']! > 0.3);
  assert.equal(rows.length, 32 + 2 * DECODE.length);

  // A second open reuses the profile and assigns the same widths.
  const again = await openMoeRunner(f.compiled, spec, { threads: 1, config, tokenizer: f.checkpoint.tokenizer });
  assert.equal(again.stats()['expertsAt4Bits'], s0['expertsAt4Bits']);
  await again.release();
});

t.test('a missing, truncated or corrupted expert file is a clear error naming the file', async () => {
  const f = await moeFixture('mixtral', 13);
  const spec = f.checkpoint.spec;
  const ids = promptIds(8, spec.vocabSize);
  const cases: Array<{ damage: (file: string) => void; code: string; says: RegExp }> = [
    { damage: (file) => rmSync(file), code: 'expert_file_missing', says: /cannot be opened/ },
    { damage: (file) => truncateSync(file, 100), code: 'expert_file_corrupt', says: /is 100 bytes, the manifest says/ },
    {
      damage: (file) => {
        const b = readFileSync(file);
        b[b.length >> 1] = (b[b.length >> 1] ?? 0) ^ 0xff;
        writeFileSync(file, b);
      },
      code: 'expert_file_corrupt',
      says: /CRC-32 .* does not match/,
    },
  ];
  for (const [i, c] of cases.entries()) {
    const runner = await f.open({ budgetBytes: 0 });
    // Damage every layer-0 fp32 expert of a fresh copy of the name set: whichever the router picks is hit.
    const files = runner.manifest.experts.filter((e) => e.layer === 0 && e.bits === 32).map((e) => join(f.compiled.dir, e.file));
    const saved = files.map((file) => (existsSync(file) ? readFileSync(file) : null));
    for (const file of files) c.damage(file);
    await assert.rejects(runSequence(f, runner, ids, []), (err: unknown) => {
      assert.ok(err instanceof MoeRunnerError, String(err));
      assert.equal(err.code, c.code, `case ${i}: ${err.message}`);
      assert.ok(err.file !== null && files.includes(err.file), `case ${i}: error names ${err.file}`);
      assert.ok(err.message.includes(err.file));
      assert.match(err.message, c.says);
      return true;
    });
    await runner.release();
    files.forEach((file, j) => writeFileSync(file, saved[j]!));
  }
});
