/**
 * The scorer language model behind every compression method: per-token
 * log-probabilities of a sequence. Self-information is -logprob. The served
 * model is the default scorer; another local model works when it shares the
 * served model's tokenizer (the ids must mean the same text).
 */

import type { TextTokenizer } from '../../model/tokenizer-types.js';

export interface TokenScorer {
  readonly vocabSize: number;
  /**
   * For each position t >= 1, log p(token_t | tokens_<t) in nats; position 0
   * has no prediction and is NaN. Long inputs are scored in windows no longer
   * than the model's context, so a token far into a long input is conditioned
   * on the window before it, not on the whole prefix.
   */
  logprobs(tokens: readonly number[]): Promise<Float32Array>;
}

/** Self-information (surprisal) in nats: -logprob, NaN where there is no prediction. */
export function selfInformation(logprobs: Float32Array): Float32Array {
  const out = new Float32Array(logprobs.length);
  for (let i = 0; i < logprobs.length; i++) out[i] = -(logprobs[i] ?? Number.NaN);
  return out;
}

/**
 * Null when a scorer model's tokenizer gives every id the same piece as the
 * served model's (scores are per id, so anything else scores other text);
 * otherwise why not.
 */
export function tokenizerMismatch(scorer: TextTokenizer, served: TextTokenizer): string | null {
  if (scorer.vocabSize !== served.vocabSize) return `the scorer's tokenizer has ${scorer.vocabSize} ids, the served model's ${served.vocabSize}`;
  for (let id = 0; id < served.vocabSize; id++) {
    const a = scorer.idToPiece(id);
    const b = served.idToPiece(id);
    if (a !== b) return `id ${id} is ${JSON.stringify(a)} for the scorer and ${JSON.stringify(b)} for the served model`;
  }
  return null;
}
