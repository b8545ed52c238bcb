/**
 * The pipeline LLMLingua and LongLLMLingua share: the budget controller keeps
 * the protected parts and drops whole documents at the coarse level, then the
 * iterative token-level compression brings what is left to the target. The
 * two methods differ in how documents are ranked, whether token scores are
 * conditioned on the question, and how the budget is spread over documents.
 */
import { Type } from '@sinclair/typebox';
import type { TextTokenizer } from '../../model/tokenizer-types.js';
import { leadTokens, rankByPerplexity, rankByQuestion, selectDocuments, splitDocuments, type Document, type DocumentSplit } from './documents.js';
import type { TokenScorer } from './scorer.js';
import { buildResult, checkInput, flatten, keepAll, resolveTarget, type CommonParams } from './segments.js';
import { compressTokenLevel } from './token-level.js';
import type { CompressionInput, CompressionResult } from './types.js';

/** Params both methods have (besides the common ones). */
export const LinguaParams = {
  iterativeSize: Type.Integer({
    minimum: 8,
    maximum: 4096,
    default: 200,
    description: 'Compressible tokens per token-level iteration; each iteration is scored conditioned on the compressed prompt before it.',
  }),
  coarse: Type.Boolean({ default: true, description: 'Drop whole documents first (the coarse level); off: token level only.' }),
  coarseSlack: Type.Integer({
    minimum: 0,
    maximum: 1_000_000,
    default: 100,
    description: 'Tokens beyond the budget the coarse level may keep, so the token level has room to choose (the reference "+100").',
  }),
  documents: Type.Union([Type.Literal('paragraph'), Type.Literal('segment')], {
    default: 'paragraph',
    description: 'What a document is: each blank-line-separated paragraph of the context, or each context segment (message) whole.',
  }),
};

export interface LinguaOptions extends CommonParams {
  readonly iterativeSize: number;
  readonly coarse: boolean;
  readonly coarseSlack: number;
  readonly documents: DocumentSplit;
  /** Rank documents by the question's perplexity given each (LongLLMLingua); false: by their own perplexity. */
  readonly questionAware: boolean;
  readonly contrastive: boolean;
  /** LongLLMLingua's dynamic compression ratio: the best-ranked kept document keeps this much more, the worst this much less. */
  readonly dynamicRatio: number;
  readonly reorder: 'original' | 'rank';
  readonly questionSuffix: string;
}

export async function compressLingua(
  method: string,
  input: CompressionInput,
  scorer: TokenScorer,
  tokenizer: TextTokenizer,
  o: LinguaOptions,
): Promise<CompressionResult> {
  checkInput(input, scorer.vocabSize, method);
  const flat = flatten(input, o);
  const target = resolveTarget(o.rate, flat.tokens.length, flat.compressibleCount);
  const question = lastQuestion(input);
  const useQuestion = o.questionAware && question.length > 0;
  const details: Record<string, number | string> = {
    question: o.questionAware ? (useQuestion ? 'used' : 'absent') : 'not used',
    documents: 0,
    documentsKept: 0,
    windows: 0,
    scorerCalls: 0,
  };
  if (target.keep >= flat.compressibleCount) return keepAll(method, input, flat, target, tokenizer, details);

  const docs = splitDocuments(input, flat, tokenizer, o.documents);
  let docTokens = 0;
  for (const d of docs) docTokens += d.end - d.start;
  // Kept documents in rank order (best first); without the coarse level every document, in place.
  let ranked = docs.map((_, i) => i);
  let scorerCalls = 0;
  if (o.coarse && docs.length > 1) {
    const lead = leadTokens(input);
    const suffix = o.questionSuffix === '' ? [] : tokenizer.encode(o.questionSuffix, { addSpecialTokens: false });
    const ranking = useQuestion ? await rankByQuestion(docs, flat, lead, [...question, ...suffix], scorer) : await rankByPerplexity(docs, flat, lead, scorer);
    scorerCalls += docs.length;
    const docBudget = Math.round((target.keep * docTokens) / flat.compressibleCount);
    ranked = selectDocuments(docs, ranking.order, docBudget, o.coarseSlack);
  }
  details['documents'] = docs.length;
  details['documentsKept'] = ranked.length;

  const docOf = new Int32Array(flat.tokens.length).fill(-1);
  docs.forEach((d, i) => docOf.fill(i, d.start, d.end));
  const rankOf = new Map<number, number>(ranked.map((doc, r) => [doc, r]));
  const inPlay = new Uint8Array(flat.tokens.length);
  for (let pos = 0; pos < inPlay.length; pos++) {
    const doc = docOf[pos] ?? -1;
    inPlay[pos] = flat.compressible[pos] !== 1 || doc < 0 || rankOf.has(doc) ? 1 : 0;
  }
  const reorder = o.reorder === 'rank' && o.coarse && docs.length > 1;
  const order = outputOrder(input, flat.segmentStart, docs, ranked, inPlay, reorder);

  let inPlayCompressible = 0;
  for (const pos of order) inPlayCompressible += flat.compressible[pos] ?? 0;
  let keep: Uint8Array;
  if (target.keep >= inPlayCompressible) {
    keep = inPlay;
  } else {
    const delta = docDeltas(ranked, o.dynamicRatio);
    const ratio = spreadRatio(order, flat.compressible, docOf, delta, target.keep);
    const tokenLevel = await compressTokenLevel(
      {
        flat,
        order,
        ratio,
        keep: target.keep,
        iterativeSize: o.iterativeSize,
        condition: useQuestion && o.contrastive ? { tokens: question, at: leadTokens(input).length } : null,
      },
      scorer,
    );
    keep = tokenLevel.keep;
    scorerCalls += tokenLevel.scorerCalls;
    details['windows'] = tokenLevel.windows;
  }
  details['scorerCalls'] = scorerCalls;
  const perSegment = reorder ? segmentOrders(input, flat.segmentOf, flat.offsetOf, order, keep) : undefined;
  return buildResult(method, input, flat, keep, target, tokenizer, details, perSegment);
}

function lastQuestion(input: CompressionInput): readonly number[] {
  for (let i = input.segments.length - 1; i >= 0; i--) {
    const s = input.segments[i];
    if (s !== undefined && s.role === 'question') return s.tokens;
  }
  return [];
}

/** Flat positions in output order: in place, or (reorder) each segment's kept documents best first. */
function outputOrder(
  input: CompressionInput,
  segmentStart: Int32Array,
  docs: readonly Document[],
  ranked: readonly number[],
  inPlay: Uint8Array,
  reorder: boolean,
): number[] {
  const order: number[] = [];
  input.segments.forEach((s, si) => {
    const base = segmentStart[si] ?? 0;
    const own = ranked.filter((d) => docs[d]?.segment === si);
    if (reorder && own.length > 0) {
      // Tokens of the segment outside any document (none with the current splits) stay in front.
      const covered = new Uint8Array(s.tokens.length);
      for (const d of docs) if (d.segment === si) covered.fill(1, d.start - base, d.end - base);
      for (let i = 0; i < s.tokens.length; i++) if (covered[i] === 0 && inPlay[base + i] === 1) order.push(base + i);
      for (const d of own) {
        const doc = docs[d];
        if (doc !== undefined) for (let pos = doc.start; pos < doc.end; pos++) order.push(pos);
      }
      return;
    }
    for (let i = 0; i < s.tokens.length; i++) if (inPlay[base + i] === 1) order.push(base + i);
  });
  return order;
}

/** LongLLMLingua's dynamic ratio: +d for the best kept document down to -d for the worst, linearly in rank. */
function docDeltas(ranked: readonly number[], d: number): Map<number, number> {
  const n = ranked.length;
  return new Map(ranked.map((doc, r) => [doc, n > 1 ? d * (1 - (2 * r) / (n - 1)) : 0]));
}

/** Per position, clamp(tau + delta_doc, 0, 1) with tau chosen so the shares sum to `keep`. */
function spreadRatio(order: readonly number[], compressible: Uint8Array, docOf: Int32Array, delta: ReadonlyMap<number, number>, keep: number): Float64Array {
  const deltas: number[] = [];
  for (const pos of order) if (compressible[pos] === 1) deltas.push(delta.get(docOf[pos] ?? -1) ?? 0);
  const sumAt = (tau: number): number => deltas.reduce((a, dl) => a + Math.min(1, Math.max(0, tau + dl)), 0);
  let lo = -1;
  let hi = 2;
  for (let it = 0; it < 60; it++) {
    const mid = (lo + hi) / 2;
    if (sumAt(mid) < keep) lo = mid;
    else hi = mid;
  }
  const ratio = new Float64Array(compressible.length);
  for (const pos of order) {
    if (compressible[pos] === 1) ratio[pos] = Math.min(1, Math.max(0, hi + (delta.get(docOf[pos] ?? -1) ?? 0)));
  }
  return ratio;
}

function segmentOrders(input: CompressionInput, segmentOf: Int32Array, offsetOf: Int32Array, order: readonly number[], keep: Uint8Array): number[][] {
  const out = input.segments.map(() => [] as number[]);
  for (const pos of order) if (keep[pos] === 1) out[segmentOf[pos] ?? 0]?.push(offsetOf[pos] ?? 0);
  return out;
}
