/**
 * The engine against golden.json: reference outputs for the real stories260K
 * model computed in float64 independently of capserve (see the model README).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING } from '../../src/engine/types.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { missingShared, STORIES_DIR } from '../helpers/shared.js';
import { maxAbsDiff, openTestModel, TEST_CACHE_DIR } from '../helpers/session.js';

interface GoldenPrompt {
  name: string;
  text: string;
  input_ids: number[];
  greedy_ids: number[];
  greedy_text: string;
  full_text: string;
  first_step_logits: number[];
}
interface Golden {
  prompts: GoldenPrompt[];
  perplexity_tinystories_first2000: { ids: number[]; window: number; perplexity: number };
}

const skip = missingShared('models', 'stories260K', 'golden.json');
const golden = (): Golden => JSON.parse(readFileSync(join(STORIES_DIR, 'golden.json'), 'utf8')) as Golden;

t.test('tokenizer ids match golden.json', { skip: skip ?? false }, async () => {
  const tok = loadTokenizer(STORIES_DIR);
  for (const p of golden().prompts) assert.deepEqual(tok.encode(p.text, { addSpecialTokens: true }), p.input_ids, p.name);
});

t.test('first-step logits match golden.json within 1e-4', { skip: skip ?? false }, async () => {
  const model = await openTestModel(STORIES_DIR);
  try {
    for (const p of golden().prompts) {
      const { logits } = await model.prefill(p.input_ids);
      const diff = maxAbsDiff(logits, p.first_step_logits);
      assert.ok(diff <= 1e-4, `${p.name}: max abs diff ${diff}`);
    }
  } finally {
    await model.close();
  }
});

t.test('perplexity of the first 2000 TinyStories tokens matches golden.json', { skip: skip ?? false }, async () => {
  const g = golden().perplexity_tinystories_first2000;
  const model = await openTestModel(STORIES_DIR);
  try {
    let nll = 0;
    let scored = 0;
    for (let start = 0; start < g.ids.length; start += g.window) {
      const window = g.ids.slice(start, start + g.window);
      const { logits } = await model.prefill(window, true);
      const V = model.checkpoint.spec.vocabSize;
      for (let t = 0; t + 1 < window.length; t++) {
        const row = logits.subarray(t * V, (t + 1) * V);
        let max = -Infinity;
        for (const v of row) max = Math.max(max, v);
        let sum = 0;
        for (const v of row) sum += Math.exp(v - max);
        nll -= (row[window[t + 1] ?? 0] ?? 0) - max - Math.log(sum);
        scored += 1;
      }
    }
    const ppl = Math.exp(nll / scored);
    assert.ok(Math.abs(ppl - g.perplexity) / g.perplexity < 1e-4, `perplexity ${ppl} vs golden ${g.perplexity}`);
  } finally {
    await model.close();
  }
});

t.test('64-token greedy continuations match golden.json, all prompts batched together', { skip: skip ?? false }, async () => {
  const engine = await createLocalEngine({ modelDir: STORIES_DIR, cacheDir: TEST_CACHE_DIR, threads: 1, prefillChunk: 128 });
  try {
    await Promise.all(
      golden().prompts.map(async (p) => {
        const ids: number[] = [];
        let text = '';
        const sampling = { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 64, ignoreEos: true };
        for await (const ev of engine.generate({ id: p.name, promptTokens: p.input_ids, sampling, policy: 'full' })) {
          text += ev.text;
          if (ev.type === 'token') ids.push(ev.tokenId);
          else assert.equal(ev.finishReason, 'length');
        }
        assert.deepEqual(ids, p.greedy_ids, p.name);
        // The stream decodes in the prompt's context: a first token's leading space is kept.
        assert.equal(p.text + text, p.full_text, p.name);
      }),
    );
    assert.equal(engine.health().kvBytesUsed, 0, 'all KV memory returned after the requests finished');
  } finally {
    await engine.close();
  }
});
