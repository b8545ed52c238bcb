import assert from 'node:assert/strict';
import t from 'tap';
import { paragraphUnits, phraseUnits, sentenceUnits, tokenPieces, tokenUnits, type UnitMap } from '../../../../src/policies/compression/text-units.js';
import { WordTokenizer } from './fakes.js';

const TEXT = 'One day, a little girl named Lily found a needle. She was happy!\n\nThe end.';
const tok = new WordTokenizer(TEXT);

/** The text of each unit, in order. */
function texts(pieces: readonly string[], units: UnitMap): string[] {
  const out: string[] = [];
  pieces.forEach((p, i) => {
    const u = units.unitOf[i] ?? 0;
    out[u] = (out[u] ?? '') + p;
  });
  assert.equal(out.length, units.count);
  return out;
}

t.test('tokenPieces: the pieces concatenate to the decoded text, one per token', async () => {
  const ids = tok.encode(TEXT);
  const pieces = tokenPieces(ids, tok);
  assert.equal(pieces.length, ids.length);
  assert.equal(pieces.join(''), TEXT);
});

t.test('sentence units end after . ! ? and line breaks', async () => {
  // This tokenizer glues whitespace to the next word: '\n\nThe' is one token.
  const pieces = tokenPieces(tok.encode(TEXT), tok);
  assert.deepEqual(texts(pieces, sentenceUnits(pieces)), ['One day, a little girl named Lily found a needle.', ' She was happy!', '\n\nThe end.']);
});

t.test('whitespace-only tokens stay with the unit they end (byte-level newlines)', async () => {
  const pieces = ['Hi', '!', '\n', '\n', 'Yo', '.', ' ', 'Ok', '.'];
  assert.deepEqual(texts(pieces, sentenceUnits(pieces)), ['Hi!\n\n', 'Yo. ', 'Ok.']);
  assert.deepEqual(texts(pieces, paragraphUnits(pieces)), ['Hi!\n\n', 'Yo. Ok.']);
  assert.deepEqual(texts(pieces, phraseUnits(pieces, 1)), ['Hi!\n\n', 'Yo. ', 'Ok.']);
});

t.test('phrase units: words with their punctuation, grouped up to maxWords, never across , or a sentence end', async () => {
  const pieces = tokenPieces(tok.encode(TEXT), tok);
  assert.deepEqual(texts(pieces, phraseUnits(pieces, 1)).slice(0, 4), ['One', ' day,', ' a', ' little']);
  assert.deepEqual(texts(pieces, phraseUnits(pieces, 3)), ['One day,', ' a little girl', ' named Lily found', ' a needle.', ' She was happy!', '\n\nThe end.']);
});

t.test('paragraph units split at blank lines', async () => {
  const pieces = tokenPieces(tok.encode(TEXT), tok);
  assert.deepEqual(texts(pieces, paragraphUnits(pieces)), ['One day, a little girl named Lily found a needle. She was happy!', '\n\nThe end.']);
});

t.test('token units: one per token; empty input has no units', async () => {
  assert.deepEqual([...tokenUnits(3).unitOf], [0, 1, 2]);
  assert.equal(sentenceUnits([]).count, 0);
  assert.equal(phraseUnits([], 2).count, 0);
});

t.test('a token with no text of its own (first bytes of a character) joins the unit of the next token', async () => {
  // Pieces as a byte-fallback decoder yields them: '' for the lead byte, then the completed character.
  const pieces = ['Hi.', ' ', '', 'é', 'lan', '.'];
  assert.deepEqual(texts(pieces, sentenceUnits(pieces)), ['Hi. ', 'élan.']);
});
