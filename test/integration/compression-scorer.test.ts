/** ModelScorer against the model's own logits: fresh, with prefix reuse, and across windows. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { logSoftmaxAt } from '../../src/engine/model-scorer.js';
import { ModelScorer } from '../../src/engine/model-scorer.js';
import { openTestModel, TEST_CACHE_DIR } from '../helpers/session.js';
import { missingShared, sharedPath, STORIES_DIR } from '../helpers/shared.js';

const skip = missingShared('models', 'stories260K', 'model.safetensors') ?? missingShared('data', 'text', 'tinystories_niklas6.txt');

t.test(
  'ModelScorer: log p(token_t | tokens_<t) matches the model, position 0 is NaN, prefixes are reused, long inputs are windowed',
  { skip: skip ?? false },
  async (t) => {
    const scorer = await ModelScorer.open(STORIES_DIR, { cacheDir: TEST_CACHE_DIR, chunkTokens: 100 });
    const model = await openTestModel(STORIES_DIR);
    t.after(async () => {
      await scorer.close();
      await model.close();
    });
    const tokenizer = scorer.tokenizer;
    assert.ok(tokenizer !== null);
    const V = model.checkpoint.spec.vocabSize;
    assert.equal(scorer.vocabSize, V);
    assert.equal(scorer.windowTokens, model.checkpoint.spec.maxPositionEmbeddings);
    const text = readFileSync(sharedPath('data', 'text', 'tinystories_niklas6.txt'), 'utf8').slice(0, 4000);
    const ids = [1, ...tokenizer.encode(text, { addSpecialTokens: false })];
    assert.ok(ids.length > 1000);

    const reference = async (seq: readonly number[]): Promise<Float32Array> => {
      const { logits, kv } = await model.prefill(seq, true);
      kv.release();
      const out = new Float32Array(seq.length).fill(Number.NaN);
      for (let p = 1; p < seq.length; p++) out[p] = logSoftmaxAt(logits, (p - 1) * V, V, seq[p] ?? 0);
      return out;
    };
    const maxDiff = (a: Float32Array, b: Float32Array, from = 1): number => {
      let m = 0;
      for (let i = from; i < a.length; i++) m = Math.max(m, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
      return m;
    };

    // Fresh, chunked in 100s (3 chunks).
    const seq = ids.slice(0, 300);
    const got = await scorer.logprobs(seq);
    assert.ok(Number.isNaN(got[0]));
    assert.ok(maxDiff(got, await reference(seq)) < 1e-4);

    // A call sharing 200 tokens with the cached one runs only the rest (plus the one token that re-predicts).
    const before = scorer.stats;
    const seq2 = [...seq.slice(0, 200), ...ids.slice(500, 560)];
    const got2 = await scorer.logprobs(seq2);
    const after = scorer.stats;
    assert.equal(after.forwardTokens - before.forwardTokens, 61);
    assert.equal(after.reusedTokens - before.reusedTokens, 199);
    assert.ok(maxDiff(got2, await reference(seq2)) < 1e-4);
    // The identical call is served from the cache.
    const again = await scorer.logprobs(seq2);
    assert.equal(scorer.stats.forwardTokens, after.forwardTokens);
    assert.deepEqual([...again].slice(1), [...got2].slice(1));

    // Longer than the 512-token window: windows of 512 starting every 256 tokens, each from position 0.
    const long = ids.slice(0, 900);
    const gotLong = await scorer.logprobs(long);
    assert.ok(gotLong.slice(1).every((x) => Number.isFinite(x) && x <= 0));
    const first = await reference(long.slice(0, 512));
    assert.ok(maxDiff(gotLong.subarray(0, 512), first) < 1e-4);
    const second = await reference(long.slice(256, 768));
    assert.ok(maxDiff(gotLong.subarray(512, 768), second.subarray(256)) < 1e-4);
    const third = await reference(long.slice(512, 900));
    assert.ok(maxDiff(gotLong.subarray(768, 900), third.subarray(256)) < 1e-4);

    assert.deepEqual([...(await scorer.logprobs([]))], []);
    assert.ok(Number.isNaN((await scorer.logprobs([5]))[0]));
    await assert.rejects(scorer.logprobs([1, V]), /token 1 is 512, expected an integer id in \[0, 512\)/);
  },
);
