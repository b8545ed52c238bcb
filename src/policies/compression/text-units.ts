/**
 * Lexical units over token ids, defined on the decoded text so they do not
 * depend on the tokenizer's merges:
 * - sentence: ends after [.!?…] (plus closing quotes/brackets) followed by
 *   whitespace, or after a line break;
 * - phrase: a piece of a sentence ending at , ; : or a dash, cut further into
 *   chunks of at most `maxWords` words (a word starts at a token whose text
 *   begins with whitespace). Selective Context uses spaCy noun chunks; this
 *   keeps the spirit (short multi-word units, punctuation-delimited) without a
 *   parser;
 * - paragraph: ends after a blank line (LongLLMLingua's documents).
 * A token belongs to the unit in which its first non-space character falls
 * (a whitespace-only token, to the unit it ends); tokens with no text of their
 * own (the first bytes of a multi-byte character) join the next.
 */
import type { TextTokenizer } from '../../model/tokenizer-types.js';

/** Per token, the text it contributes to decode(tokens); the pieces concatenate to the decoded text. */
export function tokenPieces(tokens: readonly number[], tokenizer: TextTokenizer): string[] {
  const stream = tokenizer.createDecodeStream();
  const pieces = tokens.map((t) => stream.push(t));
  const rest = stream.flush();
  const last = pieces.length - 1;
  if (rest !== '' && last >= 0) pieces[last] = `${pieces[last] ?? ''}${rest}`;
  return pieces;
}

/** Per token, the index of the unit it belongs to (0-based, non-decreasing). */
export interface UnitMap {
  readonly unitOf: Int32Array;
  readonly count: number;
}

// Boundaries sit after the whitespace that follows the mark, so whitespace-only tokens stay with the unit they end.
const SENTENCE_END = /[.!?…]+["'”’)\]]*(?=\s|$)\s*|\n\s*/g;
const PHRASE_END = /[,;:—–]+["'”’)\]]*\s*/g;
const PARAGRAPH_END = /\n[ \t]*\n\s*/g;
/** A word starts at a token whose text is whitespace followed by something visible. */
const STARTS_WITH_SPACE = /^\s+\S/;

/** Per token, the text offset of its first non-space character (its start when it has none). */
function anchors(pieces: readonly string[]): Int32Array {
  const out = new Int32Array(pieces.length);
  let c = 0;
  pieces.forEach((p, i) => {
    const lead = p.search(/\S/);
    out[i] = c + (lead < 0 ? 0 : lead);
    c += p.length;
  });
  return out;
}

function boundaries(text: string, pattern: RegExp): number[] {
  const out: number[] = [];
  pattern.lastIndex = 0;
  for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
    out.push(m.index + m[0].length);
    if (m[0].length === 0) pattern.lastIndex++;
  }
  return out;
}

/** Token i (> 0) opens a unit when a boundary b satisfies anchor[i-1] < b <= anchor[i]. */
function mapBoundaries(pieces: readonly string[], cuts: readonly number[]): Int32Array {
  const s = anchors(pieces);
  const unitOf = new Int32Array(pieces.length);
  let u = 0;
  let k = 0;
  for (let i = 1; i < pieces.length; i++) {
    const prev = s[i - 1] ?? 0;
    const cur = s[i] ?? 0;
    while (k < cuts.length && (cuts[k] ?? 0) <= prev) k++;
    if (k < cuts.length && (cuts[k] ?? 0) <= cur) {
      u++;
      while (k < cuts.length && (cuts[k] ?? 0) <= cur) k++;
    }
    unitOf[i] = u;
  }
  return unitOf;
}

function finish(unitOf: Int32Array): UnitMap {
  return { unitOf, count: unitOf.length === 0 ? 0 : (unitOf[unitOf.length - 1] ?? 0) + 1 };
}

export function tokenUnits(n: number): UnitMap {
  return { unitOf: Int32Array.from({ length: n }, (_, i) => i), count: n };
}

export function sentenceUnits(pieces: readonly string[]): UnitMap {
  return finish(mapBoundaries(pieces, boundaries(pieces.join(''), SENTENCE_END)));
}

export function paragraphUnits(pieces: readonly string[]): UnitMap {
  return finish(mapBoundaries(pieces, boundaries(pieces.join(''), PARAGRAPH_END)));
}

export function phraseUnits(pieces: readonly string[], maxWords: number): UnitMap {
  const text = pieces.join('');
  const cuts = [...boundaries(text, SENTENCE_END), ...boundaries(text, PHRASE_END)].sort((a, b) => a - b);
  const coarse = mapBoundaries(pieces, cuts);
  const unitOf = new Int32Array(pieces.length);
  let u = -1;
  let words = 0;
  for (let i = 0; i < pieces.length; i++) {
    const opens = i === 0 || coarse[i] !== coarse[i - 1];
    const wordStart = opens || STARTS_WITH_SPACE.test(pieces[i] ?? '');
    if (opens) {
      u++;
      words = 1;
    } else if (wordStart) {
      words++;
      if (words > maxWords) {
        u++;
        words = 1;
      }
    }
    unitOf[i] = u;
  }
  return finish(unitOf);
}
