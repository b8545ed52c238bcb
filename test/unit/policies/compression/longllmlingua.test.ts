import assert from 'node:assert/strict';
import t from 'tap';
import { longllmlingua, LongLlmlinguaParams } from '../../../../src/policies/compression/longllmlingua.js';
import { flatten, resolveTarget } from '../../../../src/policies/compression/segments.js';
import type { CompressionInput } from '../../../../src/policies/compression/types.js';
import { chatInput, CONTEXT_SEGMENT, keptMask, paragraphOf, scorer, tokenizer } from './corpus.js';
import { params, validate } from './params.js';

for (const rate of [0.7, 0.4, 0.15, 45]) {
  t.test(`longllmlingua (rate ${rate}): protected parts kept, rate met exactly`, async () => {
    const input = chatInput();
    const r = await longllmlingua.compress(input, scorer(), tokenizer, params(LongLlmlinguaParams, { rate, iterativeSize: 16 }));
    input.segments.forEach((s, i) => {
      if (i !== CONTEXT_SEGMENT) assert.deepEqual(r.segments[i]?.tokens, s.tokens, `segment ${i} kept`);
    });
    const flat = flatten(input, { compressSystem: false, compressQuestion: false });
    assert.equal(r.segments[CONTEXT_SEGMENT]?.tokens.length, resolveTarget(rate, flat.tokens.length, flat.compressibleCount).keep);
    assert.equal(r.details['question'], 'used');
  });
}

t.test('longllmlingua: the document that answers the question is ranked first and kept; question words survive', async () => {
  const input = chatInput();
  const ctx = input.segments[CONTEXT_SEGMENT]?.tokens ?? [];
  const para = paragraphOf(input);
  assert.equal(Math.max(...para), 3);
  const r = await longllmlingua.compress(input, scorer(), tokenizer, params(LongLlmlinguaParams, { rate: 0.25, coarseSlack: 0, reorder: 'rank' }));
  const mask = keptMask(ctx.length, r.dropped, CONTEXT_SEGMENT);
  const keptPer = [0, 0, 0, 0];
  ctx.forEach((_, i) => {
    const p = para[i] ?? 0;
    keptPer[p] = (keptPer[p] ?? 0) + (mask[i] ?? 0);
  });
  assert.ok((keptPer[1] ?? 0) > 0, `the needle paragraph is kept (${keptPer.join(',')})`);
  assert.ok(keptPer.filter((k) => k === 0).length >= 2, `irrelevant paragraphs dropped whole (${keptPer.join(',')})`);
  // Reordered: the best document comes first in the output.
  const text = tokenizer.decode(r.segments[CONTEXT_SEGMENT]?.tokens ?? []);
  assert.match(text, /^\s*\S*\s*(Lily|found|silver|needle)/);
  // Contrastive scores favour what the question makes predictable.
  for (const w of [' silver', ' needle']) assert.ok(text.includes(w), `${w} kept in ${JSON.stringify(text)}`);
});

t.test('longllmlingua: with a dynamic ratio the best-ranked kept document keeps a larger share', async () => {
  const input = chatInput();
  const ctx = input.segments[CONTEXT_SEGMENT]?.tokens ?? [];
  const para = paragraphOf(input);
  const share = async (dynamicRatio: number): Promise<number[]> => {
    const r = await longllmlingua.compress(
      input,
      scorer(),
      tokenizer,
      params(LongLlmlinguaParams, { rate: 0.5, coarse: true, coarseSlack: 1000, dynamicRatio }),
    );
    const mask = keptMask(ctx.length, r.dropped, CONTEXT_SEGMENT);
    const kept = [0, 0, 0, 0];
    const len = [0, 0, 0, 0];
    ctx.forEach((_, i) => {
      const p = para[i] ?? 0;
      kept[p] = (kept[p] ?? 0) + (mask[i] ?? 0);
      len[p] = (len[p] ?? 0) + 1;
    });
    return kept.map((k, p) => k / (len[p] ?? 1));
  };
  const flatShare = await share(0);
  const dyn = await share(0.4);
  // Paragraph 1 answers the question (rank 0): its share grows with the dynamic ratio.
  assert.ok((dyn[1] ?? 0) > (flatShare[1] ?? 0) + 0.1, `${flatShare.map((x) => x.toFixed(2))} -> ${dyn.map((x) => x.toFixed(2))}`);
});

t.test('longllmlingua: without a question it falls back to perplexity ranking and says so', async () => {
  const input: CompressionInput = { segments: chatInput().segments.filter((s) => s.role !== 'question') };
  const r = await longllmlingua.compress(input, scorer(), tokenizer, params(LongLlmlinguaParams, { rate: 0.5 }));
  assert.equal(r.details['question'], 'absent');
  const flat = flatten(input, { compressSystem: false, compressQuestion: false });
  assert.equal(r.segments[CONTEXT_SEGMENT]?.tokens.length, resolveTarget(0.5, flat.tokens.length, flat.compressibleCount).keep);
});

t.test('longllmlingua: params schema defaults and strictness', async () => {
  const p = params(LongLlmlinguaParams);
  assert.equal(p['contrastive'], true);
  assert.equal(p['dynamicRatio'], 0.25);
  assert.equal(p['reorder'], 'original');
  assert.match(String(p['questionSuffix']), /We can get the answer/);
  for (const [k, v] of Object.entries(LongLlmlinguaParams.properties))
    assert.ok(typeof v.description === 'string' && v.description.length > 20, `${k} documented`);
  assert.equal(validate(LongLlmlinguaParams, { dynamicRatio: 1.5 }).ok, false);
  assert.equal(validate(LongLlmlinguaParams, { reorder: 'sort' }).ok, false);
  assert.equal(validate(LongLlmlinguaParams, { extra: 1 }).ok, false);
});
