// LongLLMLingua (Jiang et al., ACL 2024, "LongLLMLingua: Accelerating and Enhancing LLMs in Long Context Scenarios via Prompt Compression"):
// rank documents by the perplexity of the question (plus a restrictive statement) given each, lowest first; keep the best under
// the budget with a dynamic ratio favouring the better-ranked; then keep the tokens the question makes most predictable
// (contrastive perplexity), window by window, conditioned on the compressed prefix.
import { defineCompression } from './compression-runtime.js';
import { Type, type Static } from '@sinclair/typebox';
import type { TextTokenizer } from '../../model/tokenizer-types.js';
import { typedParams, type PolicyParams } from '../method-types.js';
import { compressLingua, LinguaParams } from './lingua.js';
import type { TokenScorer } from './scorer.js';
import { CommonCompressionParams } from './segments.js';
import { COMPRESSION_CAP, NO_RUNTIME_NEEDS, type CompressionInput, type CompressionMethod, type CompressionResult } from './types.js';

export const DEFAULT_QUESTION_SUFFIX = ' We can get the answer to this question in the given documents.';

export const LongLlmlinguaParams = Type.Object(
  {
    ...CommonCompressionParams,
    ...LinguaParams,
    contrastive: Type.Boolean({
      default: true,
      description: 'Token level scores by contrastive perplexity, log p(x | question, prefix) - log p(x | prefix); off: plain surprisal as LLMLingua.',
    }),
    dynamicRatio: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.25,
      description: 'Dynamic compression ratio: the best-ranked kept document keeps this share more than the average, the worst this much less.',
    }),
    reorder: Type.Union([Type.Literal('original'), Type.Literal('rank')], {
      default: 'original',
      description:
        "Order of kept documents: as written, or best first within each message (the paper's reordering against lost-in-the-middle; it changes the text's order).",
    }),
    questionSuffix: Type.String({
      maxLength: 1000,
      default: DEFAULT_QUESTION_SUFFIX,
      description: 'Restrictive statement appended to the question when ranking documents; empty: the question alone.',
    }),
  },
  { additionalProperties: false },
);
export type LongLlmlinguaParamsT = Static<typeof LongLlmlinguaParams>;

export const LONGLLMLINGUA_RULE =
  'Keep system message and question; rank context documents by the perplexity of the question given each (lowest kept first) with more budget for better ranks, then keep the tokens the question makes most predictable until the rate is met.';

/** Without a question (no 'question' segment) ranking and token scores fall back to LLMLingua's; details.question says 'absent'. */
export function compressLongLlmlingua(
  input: CompressionInput,
  scorer: TokenScorer,
  tokenizer: TextTokenizer,
  p: LongLlmlinguaParamsT,
): Promise<CompressionResult> {
  return compressLingua('longllmlingua', input, scorer, tokenizer, { ...p, questionAware: true });
}

export const longllmlingua: CompressionMethod = defineCompression({
  method: 'longllmlingua',
  kind: 'context-compression' as const,
  rule: LONGLLMLINGUA_RULE,
  cap: COMPRESSION_CAP,
  schema: LongLlmlinguaParams,
  needs: () => NO_RUNTIME_NEEDS,
  check: () => [],
  compress: (input: CompressionInput, scorer: TokenScorer, tokenizer: TextTokenizer, params: PolicyParams) =>
    compressLongLlmlingua(input, scorer, tokenizer, typedParams(LongLlmlinguaParams, params)),
});
