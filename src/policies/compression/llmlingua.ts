// LLMLingua (Jiang et al., EMNLP 2023, "LLMLingua: Compressing Prompts for Accelerated Inference of Large Language Models"):
// a budget controller keeps the instruction and the question and drops whole demonstrations (highest perplexity kept first),
// then iterative token-level compression keeps each window's most surprising tokens, conditioned on the compressed prefix.
import { defineCompression } from './compression-runtime.js';
import { Type, type Static } from '@sinclair/typebox';
import type { TextTokenizer } from '../../model/tokenizer-types.js';
import { typedParams, type PolicyParams } from '../method-types.js';
import { compressLingua, LinguaParams } from './lingua.js';
import type { TokenScorer } from './scorer.js';
import { CommonCompressionParams } from './segments.js';
import { COMPRESSION_CAP, NO_RUNTIME_NEEDS, type CompressionInput, type CompressionMethod, type CompressionResult } from './types.js';

export const LlmlinguaParams = Type.Object({ ...CommonCompressionParams, ...LinguaParams }, { additionalProperties: false });
export type LlmlinguaParamsT = Static<typeof LlmlinguaParams>;

export const LLMLINGUA_RULE =
  'Keep system message and question; drop whole context documents ranked by their own perplexity (highest kept first), then keep the most surprising tokens of each window, conditioned on the compressed prefix, until the rate is met.';

export function compressLlmlingua(input: CompressionInput, scorer: TokenScorer, tokenizer: TextTokenizer, p: LlmlinguaParamsT): Promise<CompressionResult> {
  return compressLingua('llmlingua', input, scorer, tokenizer, {
    ...p,
    questionAware: false,
    contrastive: false,
    dynamicRatio: 0,
    reorder: 'original',
    questionSuffix: '',
  });
}

export const llmlingua: CompressionMethod = defineCompression({
  method: 'llmlingua',
  kind: 'context-compression' as const,
  rule: LLMLINGUA_RULE,
  cap: COMPRESSION_CAP,
  schema: LlmlinguaParams,
  needs: () => NO_RUNTIME_NEEDS,
  check: () => [],
  compress: (input: CompressionInput, scorer: TokenScorer, tokenizer: TextTokenizer, params: PolicyParams) =>
    compressLlmlingua(input, scorer, tokenizer, typedParams(LlmlinguaParams, params)),
});
