/**
 * Incremental detokenization in context (issue 11, bugs 1 and 2): streamed deltas
 * after a prompt join to decode(prompt + ids) minus decode(prompt), the first one
 * keeping its leading space; logprob strings are decoded in the same context.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { loadTokenizer } from '../../../src/model/tokenizer.js';
import type { TextTokenizer } from '../../../src/model/tokenizer-types.js';
import { MISSING_SHARED, loadGolden, sharedPath } from './fixtures.js';

function streamAfter(tok: TextTokenizer, context: readonly number[], ids: readonly number[]): string[] {
  const stream = tok.createDecodeStream({ skipSpecialTokens: true, context });
  const parts = ids.map((id) => stream.push(id));
  parts.push(stream.flush());
  return parts;
}

t.test('stories260K: the first generated token keeps its leading space after the prompt', async (t) => {
  const dir = sharedPath('models', 'stories260K');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const tok = loadTokenizer(dir);
  const prompt = tok.encode('Once upon a time,');
  const there = tok.encode('Once upon a time, there was', { addSpecialTokens: false }).slice(-2);
  assert.deepEqual(
    there.map((id) => tok.idToPiece(id)),
    ['▁there', '▁was'],
  );
  assert.deepEqual(streamAfter(tok, prompt, there), [' there', ' was', '']);
  // Without a context the old behaviour stays: a sequence's first token loses its space, as decode() does.
  assert.deepEqual(streamAfter(tok, [], there), ['there', ' was', '']);
  for (const p of loadGolden(dir).prompts) {
    const parts = streamAfter(tok, p.input_ids, p.greedy_ids);
    const promptText = tok.decode(p.input_ids, { skipSpecialTokens: true });
    assert.equal(promptText + parts.join(''), p.full_text, p.name);
  }
});

t.test('llama2: deltas never carry a U+FFFD the final text lacks, also when the context ends mid-character', async (t) => {
  const dir = sharedPath('tokenizers', 'llama2');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const tok = loadTokenizer(dir);
  const all = tok.encode('Tea time ☕ and 日本 café ☕☕ end');
  for (let cut = 1; cut < all.length; cut++) {
    const context = all.slice(0, cut);
    const parts = streamAfter(tok, context, all.slice(cut));
    const full = tok.decode(all, { skipSpecialTokens: true });
    const before = tok.decode(context, { skipSpecialTokens: true });
    for (const p of parts) assert.ok(!p.includes('\uFFFD'), `cut ${cut}: delta ${JSON.stringify(p)}`);
    if (!before.endsWith('\uFFFD')) assert.equal(before + parts.join(''), full, `cut ${cut}`);
    else assert.ok(full.endsWith(parts.join('')) && parts.join('').length > 0, `cut ${cut} (context ends mid-character)`);
  }
});

t.test('tokenText and peek: strings in context, specials and partial bytes stay distinct', async (t) => {
  const dir = sharedPath('tokenizers', 'llama2');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const tok = loadTokenizer(dir);
  const prompt = tok.encode('Once upon a time,');
  const there = tok.encode('time, there', { addSpecialTokens: false }).at(-1) ?? -1;
  assert.equal(tok.idToPiece(there), '▁there');
  assert.equal(tok.tokenText(prompt, there, { skipSpecialTokens: true }), ' there');
  const space = tok.encode('a ☕', { addSpecialTokens: false })[1] ?? -1;
  assert.equal(tok.idToPiece(space), '▁');
  assert.equal(tok.tokenText(prompt, space, { skipSpecialTokens: true }), ' ');
  // A lone lead byte is OpenAI's "bytes:\xNN", not U+FFFD (two such alternatives would collide).
  const e2 = tok.encode('☕', { addSpecialTokens: false }).find((id) => tok.idToPiece(id) === '<0xE2>') ?? -1;
  assert.equal(tok.tokenText(prompt, e2, { skipSpecialTokens: true }), 'bytes:\\xe2');
  // A special token that decodes to nothing in context is its own text.
  assert.equal(tok.tokenText(prompt, 2, { skipSpecialTokens: true }), '</s>');
  const stream = tok.createDecodeStream({ skipSpecialTokens: true, context: prompt });
  assert.deepEqual(stream.peek([there, space, e2, 2]), [' there', ' ', 'bytes:\\xe2', '</s>']);
  assert.equal(stream.push(there), ' there');
  assert.deepEqual(stream.peek([there]), [' there']);
});

t.test('tokenTexts keeps alternatives distinct: a byte piece reading like a character token is "bytes:\\xNN"', async (t) => {
  const dir = sharedPath('models', 'stories260K');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const tok = loadTokenizer(dir);
  const quoteByte = 3 + 0x22;
  assert.equal(tok.idToPiece(quoteByte), '<0x22>');
  const quote = Array.from({ length: tok.vocabSize }, (_, id) => id).find((id) => tok.idToPiece(id) === '"') ?? -1;
  assert.ok(quote >= 0);
  const context = tok.encode('He said');
  assert.equal(tok.tokenText(context, quoteByte, { skipSpecialTokens: true }), '"');
  assert.deepEqual(tok.tokenTexts(context, [quote, quoteByte], { skipSpecialTokens: true }), ['"', 'bytes:\\x22']);
});
