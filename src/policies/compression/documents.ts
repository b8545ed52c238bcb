/**
 * The coarse level of (Long)LLMLingua: the context as documents, ranked by a
 * perplexity under the scorer, and kept in rank order while the budget lasts.
 */
import type { TextTokenizer } from '../../model/tokenizer-types.js';
import type { TokenScorer } from './scorer.js';
import type { FlatPrompt } from './segments.js';
import { paragraphUnits, tokenPieces } from './text-units.js';
import type { CompressionInput } from './types.js';

/** Flat positions [start, end) of one document; documents never cross segments. */
export interface Document {
  readonly segment: number;
  readonly start: number;
  readonly end: number;
}

export type DocumentSplit = 'segment' | 'paragraph';

/** Documents of the compressible context segments: each segment whole, or cut at blank lines. */
export function splitDocuments(input: CompressionInput, flat: FlatPrompt, tokenizer: TextTokenizer, split: DocumentSplit): Document[] {
  const docs: Document[] = [];
  input.segments.forEach((s, si) => {
    const base = flat.segmentStart[si] ?? 0;
    if (s.role !== 'context' || s.tokens.length === 0) return;
    if (split === 'segment') {
      docs.push({ segment: si, start: base, end: base + s.tokens.length });
      return;
    }
    const units = paragraphUnits(tokenPieces(s.tokens, tokenizer));
    let start = 0;
    for (let i = 1; i <= s.tokens.length; i++) {
      if (i === s.tokens.length || units.unitOf[i] !== units.unitOf[i - 1]) {
        docs.push({ segment: si, start: base + start, end: base + i });
        start = i;
      }
    }
  });
  return docs;
}

/** Tokens placed before every separately scored text: the prompt's leading template segment (BOS and the like). */
export function leadTokens(input: CompressionInput): readonly number[] {
  const first = input.segments[0];
  return first !== undefined && first.role === 'other' ? first.tokens : [];
}

function meanSurprisal(logprobs: Float32Array, from: number, to: number): number {
  let sum = 0;
  let n = 0;
  for (let i = from; i < to; i++) {
    const lp = logprobs[i] ?? Number.NaN;
    if (Number.isNaN(lp)) continue;
    sum -= lp;
    n++;
  }
  return n === 0 ? Number.NaN : sum / n;
}

/**
 * LLMLingua's demonstration ranking: each document's own perplexity (mean
 * surprisal after the lead), highest first: the least predictable
 * demonstrations carry the most information.
 */
export async function rankByPerplexity(
  docs: readonly Document[],
  flat: FlatPrompt,
  lead: readonly number[],
  scorer: TokenScorer,
): Promise<{ order: number[]; scores: number[] }> {
  const scores: number[] = [];
  for (const d of docs) {
    const seq = [...lead, ...flat.tokens.slice(d.start, d.end)];
    const lp = await scorer.logprobs(seq);
    scores.push(meanSurprisal(lp, lead.length, seq.length));
  }
  const order = docs.map((_, i) => i).sort((a, b) => nanLow(scores[b]) - nanLow(scores[a]) || a - b);
  return { order, scores };
}

/**
 * LongLLMLingua's question-aware ranking: the perplexity of the question
 * (followed by the restrictive statement) given each document, lowest first:
 * the document that makes the question most predictable is the most relevant.
 */
export async function rankByQuestion(
  docs: readonly Document[],
  flat: FlatPrompt,
  lead: readonly number[],
  question: readonly number[],
  scorer: TokenScorer,
): Promise<{ order: number[]; scores: number[] }> {
  const scores: number[] = [];
  for (const d of docs) {
    const seq = [...lead, ...flat.tokens.slice(d.start, d.end), ...question];
    const lp = await scorer.logprobs(seq);
    scores.push(meanSurprisal(lp, seq.length - question.length, seq.length));
  }
  const order = docs.map((_, i) => i).sort((a, b) => nanHigh(scores[a]) - nanHigh(scores[b]) || a - b);
  return { order, scores };
}

function nanLow(v: number | undefined): number {
  return v === undefined || Number.isNaN(v) ? Number.NEGATIVE_INFINITY : v;
}

function nanHigh(v: number | undefined): number {
  return v === undefined || Number.isNaN(v) ? Number.POSITIVE_INFINITY : v;
}

/**
 * Keeps documents in rank order until `budget + slack` tokens are used up;
 * the document that crosses the line is kept too (as the reference does), so
 * the token level always has enough to choose from. Returns rank positions.
 */
export function selectDocuments(docs: readonly Document[], order: readonly number[], budget: number, slack: number): number[] {
  let left = budget + slack;
  const kept: number[] = [];
  for (const i of order) {
    const d = docs[i];
    if (d === undefined) continue;
    kept.push(i);
    left -= d.end - d.start;
    if (left < 0) break;
  }
  return kept;
}
