import assert from 'node:assert/strict';
import t from 'tap';
import { llmlingua, LlmlinguaParams } from '../../../../src/policies/compression/llmlingua.js';
import { flatten, resolveTarget } from '../../../../src/policies/compression/segments.js';
import { chatInput, CONTEXT_SEGMENT, keptMask, paragraphOf, scorer, tokenizer } from './corpus.js';
import { params, validate } from './params.js';

for (const rate of [0.8, 0.5, 0.2, 50]) {
  for (const coarse of [true, false]) {
    t.test(`llmlingua (rate ${rate}, coarse ${coarse}): protected parts kept, the compressible part meets the rate exactly`, async () => {
      const input = chatInput();
      const r = await llmlingua.compress(input, scorer(), tokenizer, params(LlmlinguaParams, { rate, coarse, iterativeSize: 16 }));
      input.segments.forEach((s, i) => {
        if (i !== CONTEXT_SEGMENT) assert.deepEqual(r.segments[i]?.tokens, s.tokens, `segment ${i} kept`);
      });
      const flat = flatten(input, { compressSystem: false, compressQuestion: false });
      const target = resolveTarget(rate, flat.tokens.length, flat.compressibleCount);
      assert.equal(r.segments[CONTEXT_SEGMENT]?.tokens.length, target.keep);
      assert.equal(r.compressedTokens, target.targetTokens);
      const ctx = input.segments[CONTEXT_SEGMENT]?.tokens ?? [];
      const mask = keptMask(ctx.length, r.dropped, CONTEXT_SEGMENT);
      assert.deepEqual(
        r.segments[CONTEXT_SEGMENT]?.tokens,
        ctx.filter((_, i) => mask[i] === 1),
        'kept tokens stay in order',
      );
    });
  }
}

t.test('llmlingua: the coarse level drops the most predictable document whole', async () => {
  const input = chatInput();
  const r = await llmlingua.compress(input, scorer(), tokenizer, params(LlmlinguaParams, { rate: 0.4, coarseSlack: 0 }));
  assert.equal(r.details['documents'], 4);
  assert.ok((r.details['documentsKept'] as number) < 4);
  // The repetitive cat paragraph has the lowest perplexity: dropped as one span covering it.
  const cat = paragraphOf(input).filter((p) => p === 0).length;
  assert.ok(
    r.dropped.some((d) => d.segment === CONTEXT_SEGMENT && d.start === 0 && d.end >= cat),
    JSON.stringify(r.dropped.map((d) => d.text)),
  );
});

t.test('llmlingua: each window is scored after the compressed prefix, not the original one', async () => {
  const input = chatInput();
  const sc = scorer();
  const W = 12;
  const r = await llmlingua.compress(input, sc, tokenizer, params(LlmlinguaParams, { rate: 0.5, coarse: false, iterativeSize: W }));
  const ctx = input.segments[CONTEXT_SEGMENT]?.tokens ?? [];
  const head = input.segments.slice(0, CONTEXT_SEGMENT).flatMap((s) => s.tokens);
  const tail = input.segments.slice(CONTEXT_SEGMENT + 1).flatMap((s) => s.tokens);
  const mask = keptMask(ctx.length, r.dropped, CONTEXT_SEGMENT);
  const windows = Math.ceil(ctx.length / W);
  assert.equal(r.details['windows'], windows);
  assert.equal(sc.calls.length, windows);
  sc.calls.forEach((call, j) => {
    const prefix = [...head, ...ctx.slice(0, j * W).filter((_, i) => mask[i] === 1)];
    const block = [...ctx.slice(j * W, (j + 1) * W), ...(j === windows - 1 ? tail : [])];
    assert.deepEqual(call, [...prefix, ...block], `window ${j}`);
  });
});

t.test('llmlingua: params schema defaults and strictness', async () => {
  assert.deepEqual(params(LlmlinguaParams), {
    rate: 0.5,
    compressSystem: false,
    compressQuestion: false,
    iterativeSize: 200,
    coarse: true,
    coarseSlack: 100,
    documents: 'paragraph',
  });
  for (const [k, v] of Object.entries(LlmlinguaParams.properties)) assert.ok(typeof v.description === 'string' && v.description.length > 20, `${k} documented`);
  assert.equal(validate(LlmlinguaParams, { iterativeSize: 4 }).ok, false);
  assert.equal(validate(LlmlinguaParams, { contrastive: true }).ok, false);
  assert.equal(validate(LlmlinguaParams, { documents: 'sentence' }).ok, false);
});
