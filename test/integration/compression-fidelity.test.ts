/**
 * The proof that compression beats chance: on stories260K with TinyStories,
 * the next-sentence NLL after selective-context compression (the shipped
 * policies/selective-context.yaml, at rates 0.7 and 0.5) is lower than after
 * dropping the same number of context tokens at random (100 passages, seeded,
 * three random draws per passage). See compression-passages.ts for the measure.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import t from 'tap';
import YAML from 'yaml';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { ModelScorer } from '../../src/engine/model-scorer.js';
import { selectiveContext } from '../../src/policies/compression/selective-context.js';
import { TEST_CACHE_DIR } from '../helpers/session.js';
import { missingShared, sharedPath, STORIES_DIR } from '../helpers/shared.js';
import { params } from '../unit/policies/compression/params.js';
import { loadPassages, measureFidelity } from './compression-passages.js';

const TEXT = sharedPath('data', 'text', 'tinystories_niklas6.txt');
const skip = missingShared('models', 'stories260K', 'model.safetensors') ?? missingShared('data', 'text', 'tinystories_niklas6.txt');

/** The shipped policy's params, so the proof is about what users get. */
function shippedParams(): Record<string, unknown> {
  const doc = YAML.parse(readFileSync('policies/selective-context.yaml', 'utf8')) as { params?: Record<string, unknown> };
  return doc.params ?? {};
}

t.test(
  'selective-context beats random token dropping on next-sentence NLL (stories260K, 100 passages)',
  { skip: skip ?? false, timeout: 120_000 },
  async (t) => {
    const bos = loadCheckpoint(STORIES_DIR).spec.bosTokenId ?? 1;
    const scorer = await ModelScorer.open(STORIES_DIR, { cacheDir: TEST_CACHE_DIR });
    t.after(() => scorer.close());
    const tokenizer = scorer.tokenizer;
    assert.ok(tokenizer !== null);
    const passages = loadPassages(TEXT, tokenizer, 100, 20240611);
    for (const rate of [0.7, 0.5]) {
      const r = await measureFidelity(selectiveContext, params(selectiveContext.schema, { ...shippedParams(), rate }), passages, scorer, tokenizer, bos, 7);
      t.comment(
        `rate ${rate}: kept ${r.keptRatio.toFixed(3)}, NLL full ${r.full.toFixed(4)}, selective-context ${r.method.toFixed(4)}, random ${r.random.toFixed(4)}, wins ${(100 * r.winRate).toFixed(0)}%`,
      );
      // Whole sentences go; a ratio is met to the nearest sentence, so on average the kept share is close to the rate.
      assert.ok(Math.abs(r.keptRatio - rate) < 0.05, `kept ratio ${r.keptRatio} far from rate ${rate}`);
      assert.ok(r.method < r.random, `rate ${rate}: selective-context NLL ${r.method} is not below random dropping ${r.random}`);
      assert.ok(r.full <= r.method, `rate ${rate}: compression should cost something (full ${r.full}, compressed ${r.method})`);
    }
  },
);
