/**
 * The lean decode core (src/model/compile/decode-core.ts) against the general attention core it
 * replaces on decode steps: the same compiled graph, one session taking the lean core and one
 * told not to (leanDecode: false), the same steps. The arithmetic is the same up to the order of
 * the past scores' product (the lean core streams the cache as the GEMM's A operand), so the
 * logits and the new KV entries must agree to float rounding (1e-5 of the largest logit, the
 * same greedy token): for a single sequence (its cache passed in place),
 * for a batch of two sequences of different lengths (gathered, padded), on architectures that
 * exercise the core's options: plain llama, Mistral's sliding window (per-head past masks once
 * the window bites), qwen2's biases, Gemma 2's soft-capping and per-layer windows, and a
 * float16 KV cache (cast before the core).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import t from 'tap';
import { createModel } from '../../src/model/create/create-model.js';
import type { KvDtype } from '../../src/model/step-io.js';
import type { Architecture } from '../../src/model/spec.js';
import { decodeStep, maxAbsDiff, openTestModel, tempDir, type TestModel } from '../helpers/session.js';
import { argmax } from '../reference/forward.js';

const root = tempDir('decode-core');
const STEPS = 24;

interface Trace {
  readonly logits: Float32Array[];
  readonly keys: Float32Array[];
}

/** Prefills two prompts of different lengths, then decodes STEPS steps: alone (sequence 0), then batched (both). */
async function trace(m: TestModel, prompts: readonly (readonly number[])[]): Promise<Trace> {
  const logits: Float32Array[] = [];
  const keys: Float32Array[] = [];
  const seqs = await Promise.all(prompts.map((p) => m.prefill(p, false, 2 * STEPS + 8)));
  const kvs = seqs.map((s) => s.kv);
  const [first] = kvs;
  if (first === undefined) throw new Error('no sequence');
  for (let s = 0; s < STEPS; s++) {
    const out = await decodeStep(m, [first], [30 + s]);
    logits.push(out.logits.slice());
    keys.push(...out.presentKeys.map((k) => k.slice()));
  }
  for (let s = 0; s < STEPS; s++) {
    const out = await decodeStep(
      m,
      kvs,
      kvs.map((_, b) => 40 + s + b),
    );
    logits.push(out.logits.slice());
    keys.push(...out.presentKeys.map((k) => k.slice()));
  }
  for (const kv of kvs) kv.release();
  return { logits, keys };
}

const CASES: readonly { readonly arch: Architecture; readonly kvDtype?: KvDtype }[] = [
  { arch: 'llama' },
  { arch: 'mistral' },
  { arch: 'qwen2' },
  { arch: 'gemma2' },
  { arch: 'llama', kvDtype: 'fp16' },
];

for (const [i, c] of CASES.entries()) {
  t.test(`decode steps through the lean core equal the general core to float rounding: ${c.arch}${c.kvDtype ? ` (${c.kvDtype} KV)` : ''}`, async (t) => {
    const dir = join(root, `m${i}`);
    await createModel({ arch: c.arch, preset: 'tiny', seed: 40 + i, out: dir });
    const cacheDir = join(root, 'cache');
    const open = (leanDecode: boolean): Promise<TestModel> =>
      openTestModel(dir, 'fp32', false, { cacheDir, leanDecode, ...(c.kvDtype ? { kvDtype: c.kvDtype } : {}) });
    // Longer than the tiny preset's sliding windows (16), so window masks are per head.
    const prompts = [Array.from({ length: 37 }, (_, j) => 3 + ((j * 17) % 500)), Array.from({ length: 21 }, (_, j) => 5 + ((j * 29) % 500))];
    const lean = await open(true);
    const a = await trace(lean, prompts);
    await lean.close();
    const general = await open(false);
    const b = await trace(general, prompts);
    await general.close();
    assert.equal(a.logits.length, b.logits.length);
    let worst = 0;
    a.logits.forEach((row, s) => {
      const other = b.logits[s] ?? new Float32Array(0);
      assert.equal(row.length, other.length);
      const scale = Math.max(...other.map(Math.abs));
      const diff = maxAbsDiff(row, other);
      worst = Math.max(worst, diff / scale);
      assert.ok(diff <= 1e-5 * scale, `logits of step ${s}: max |diff| ${diff} of ${scale}`);
      assert.equal(argmax(row), argmax(other), `greedy token of step ${s}`);
    });
    a.keys.forEach((row, s) => assert.ok(maxAbsDiff(row, b.keys[s] ?? new Float32Array(0)) <= 1e-5, `new keys ${s}`));
    t.comment(`largest logit difference: ${worst.toExponential(2)} of the largest logit`);
  });
}
