import assert from 'node:assert/strict';
import t from 'tap';
import { flatten, resolveTarget } from '../../../../src/policies/compression/segments.js';
import { selectiveContext, SelectiveContextParams } from '../../../../src/policies/compression/selective-context.js';
import { phraseUnits, sentenceUnits, tokenPieces, tokenUnits, type UnitMap } from '../../../../src/policies/compression/text-units.js';
import type { CompressionInput, CompressionResult } from '../../../../src/policies/compression/types.js';
import { chatInput, CONTEXT_SEGMENT, keptMask, scorer, tokenizer } from './corpus.js';
import { params, validate } from './params.js';

function unitsFor(tokens: readonly number[], unit: string, phraseWords: number): UnitMap {
  if (unit === 'token') return tokenUnits(tokens.length);
  const pieces = tokenPieces(tokens, tokenizer);
  return unit === 'sentence' ? sentenceUnits(pieces) : phraseUnits(pieces, phraseWords);
}

function unitLengths(map: UnitMap): number[] {
  const lengths = new Array<number>(map.count).fill(0);
  for (const u of map.unitOf) lengths[u] = (lengths[u] ?? 0) + 1;
  return lengths;
}

function assertProtectedKept(input: CompressionInput, r: CompressionResult, compressible: readonly number[]): void {
  input.segments.forEach((s, i) => {
    if (!compressible.includes(i)) assert.deepEqual(r.segments[i]?.tokens, s.tokens, `segment ${i} (${s.role}) must be kept whole`);
    assert.equal(r.segments[i]?.role, s.role);
  });
}

for (const unit of ['token', 'phrase', 'sentence'] as const) {
  for (const rate of [0.7, 0.5, 0.3, 40]) {
    t.test(`selective-context (${unit}, rate ${rate}): protected parts kept, rate met within one unit, lowest units dropped`, async () => {
      const input = chatInput();
      const sc = scorer();
      const p = params(SelectiveContextParams, { rate, unit, phraseWords: 2 });
      const r = await selectiveContext.compress(input, sc, tokenizer, p);
      assertProtectedKept(input, r, [CONTEXT_SEGMENT]);
      const flat = flatten(input, { compressSystem: false, compressQuestion: false });
      const target = resolveTarget(rate, flat.tokens.length, flat.compressibleCount);
      const ctx = input.segments[CONTEXT_SEGMENT]?.tokens ?? [];
      const units = unitsFor(ctx, unit, 2);
      const longest = Math.max(...unitLengths(units));
      const kept = r.segments[CONTEXT_SEGMENT]?.tokens.length ?? 0;
      if (rate > 1) {
        // A token count is a hard cap (fitting a window): at most the target, short of it by less than a unit.
        assert.ok(kept <= target.keep, `kept ${kept} > target ${target.keep}`);
        assert.ok(kept > target.keep - longest, `kept ${kept} misses target ${target.keep} by a unit (${longest}) or more`);
      } else {
        // A ratio is met to the nearest unit: within half a unit either way.
        assert.ok(Math.abs(kept - target.keep) <= longest / 2, `kept ${kept} vs target ${target.keep}, longest unit ${longest}`);
      }
      assert.equal(r.compressedTokens, r.tokens.length);
      assert.equal(r.originalTokens, flat.tokens.length);
      if (rate > 1) assert.ok(r.compressedTokens <= rate);

      // One scorer pass over the whole prompt: the context is conditioned on what precedes it.
      assert.equal(sc.calls.length, 1);
      assert.deepEqual(sc.calls[0], flat.tokens);
      // Units are dropped whole, and every dropped unit scores at most every kept unit (sum of self-information).
      const lp = await scorer().logprobs(flat.tokens);
      const base = flat.segmentStart[CONTEXT_SEGMENT] ?? 0;
      const mask = keptMask(ctx.length, r.dropped, CONTEXT_SEGMENT);
      const score = new Array<number>(units.count).fill(0);
      const state = new Array<number>(units.count).fill(-1);
      ctx.forEach((_, i) => {
        const u = units.unitOf[i] ?? 0;
        score[u] = (score[u] ?? 0) - (lp[base + i] ?? 0);
        const m = mask[i] ?? 0;
        assert.ok(state[u] === -1 || state[u] === m, `unit ${u} was cut in part`);
        state[u] = m;
      });
      const keptScores = score.filter((_, u) => state[u] === 1);
      const droppedScores = score.filter((_, u) => state[u] === 0);
      if (droppedScores.length > 0 && keptScores.length > 0) assert.ok(Math.max(...droppedScores) <= Math.min(...keptScores) + 1e-6);
      // Kept tokens are the context in order minus the dropped spans.
      assert.deepEqual(
        r.segments[CONTEXT_SEGMENT]?.tokens,
        ctx.filter((_, i) => mask[i] === 1),
      );
      assert.equal(
        r.dropped.reduce((a, d) => a + d.end - d.start, 0),
        ctx.length - kept,
      );
    });
  }
}

t.test('selective-context: repeated text (predictable under the scorer) goes first', async () => {
  const r = await selectiveContext.compress(chatInput(), scorer(), tokenizer, params(SelectiveContextParams, { rate: 0.6, unit: 'sentence' }));
  const droppedText = r.dropped.map((d) => d.text).join('|');
  assert.match(droppedText, /The cat sat on the mat again/);
  assert.doesNotMatch(droppedText, /silver needle under/);
});

t.test('selective-context: compressSystem / compressQuestion let those parts be compressed', async () => {
  const input = chatInput();
  const r = await selectiveContext.compress(
    input,
    scorer(),
    tokenizer,
    params(SelectiveContextParams, { rate: 0.3, unit: 'token', compressSystem: true, compressQuestion: true }),
  );
  assert.ok((r.segments[1]?.tokens.length ?? 0) < (input.segments[1]?.tokens.length ?? 0), 'system compressed');
  assert.ok((r.segments[4]?.tokens.length ?? 0) < (input.segments[4]?.tokens.length ?? 0), 'question compressed');
  for (const i of [0, 2, 5]) assert.deepEqual(r.segments[i]?.tokens, input.segments[i]?.tokens, 'template kept');
  assert.equal(
    r.compressibleTokens,
    (input.segments[1]?.tokens.length ?? 0) + (input.segments[3]?.tokens.length ?? 0) + (input.segments[4]?.tokens.length ?? 0),
  );
});

t.test('selective-context: rate 1 and a prompt without context keep everything without scoring', async () => {
  const sc = scorer();
  const input = chatInput();
  const all = await selectiveContext.compress(input, sc, tokenizer, params(SelectiveContextParams, { rate: 1 }));
  assert.deepEqual(
    all.tokens,
    input.segments.flatMap((s) => s.tokens),
  );
  assert.deepEqual(all.dropped, []);
  const none = await selectiveContext.compress(
    { segments: [input.segments[0] ?? { role: 'other', tokens: [] }, input.segments[4] ?? { role: 'question', tokens: [] }] },
    sc,
    tokenizer,
    params(SelectiveContextParams, { rate: 0.2 }),
  );
  assert.equal(none.compressedTokens, none.originalTokens);
  assert.equal(sc.calls.length, 0);
});

t.test('selective-context: params schema has documented defaults, ranges, and rejects unknown keys', async () => {
  assert.deepEqual(params(SelectiveContextParams), {
    rate: 0.5,
    compressSystem: false,
    compressQuestion: false,
    unit: 'sentence',
    phraseWords: 1,
    aggregate: 'sum',
  });
  for (const [k, v] of Object.entries(SelectiveContextParams.properties))
    assert.ok(typeof v.description === 'string' && v.description.length > 20, `${k} documented`);
  assert.equal(validate(SelectiveContextParams, { rat: 0.5 }).ok, false);
  assert.equal(validate(SelectiveContextParams, { rate: 1.5 }).ok, false);
  assert.equal(validate(SelectiveContextParams, { rate: 0 }).ok, false);
  assert.equal(validate(SelectiveContextParams, { rate: 300 }).ok, true);
  assert.equal(validate(SelectiveContextParams, { unit: 'word' }).ok, false);
  assert.equal(validate(SelectiveContextParams, { phraseWords: 0 }).ok, false);
  assert.equal(validate(SelectiveContextParams, { rate: '0.5' }).ok, false);
  assert.equal(selectiveContext.kind, 'context-compression');
  assert.deepEqual(selectiveContext.cap, { favors: ['C', 'P'], costs: 'A' });
});
