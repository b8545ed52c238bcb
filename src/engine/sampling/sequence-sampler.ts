import { EngineError } from '../errors.js';
import type { SamplingParams, TokenLogprob } from '../types.js';
import { checkSamplingParams, GREEDY_TEMPERATURE } from './check-params.js';
import { LogitBiasProcessor, type LogitsProcessor, PresenceFrequencyPenaltyProcessor, RepetitionPenaltyProcessor } from './logits-processors.js';
import { logSumExp } from '../log-softmax.js';
import { computeLogprobs } from './logprobs.js';
import { createRng, type Rng } from './rng.js';
import { type SamplingScratch, sharedScratch } from './scratch.js';
import { TokenHistory } from './token-history.js';
import type { GrammarMatcher } from '../grammar/matcher.js';
import { drawWeighted } from './softmax-kernel.js';
import { drawCategorical, truncate, untruncated, type TruncationParams } from './truncation.js';

export interface SampleResult {
  readonly tokenId: number;
  /** Log-probability of tokenId; null when the request asked for no logprobs. */
  readonly logprob: number | null;
  /** Best alternatives, logprob descending (ties: lowest id); null when no logprobs were asked for. */
  readonly topLogprobs: TokenLogprob[] | null;
}

/**
 * Turns one sequence's logits into its next token:
 *   logit_bias -> repetition, presence, frequency penalties
 *   -> temperature 0 (below 1e-5, as vLLM): argmax (ties: lowest id)
 *   -> grammar mask (response_format, tools: tokens that cannot continue a valid
 *      document are -Infinity, EOS only where the document is complete)
 *   -> otherwise temperature -> top-k -> top-p -> min-p -> seeded draw.
 * Records each chosen token in its own history, so penalties see it next step,
 * and advances the grammar past it.
 *
 * Logprobs are the model's raw distribution: log_softmax of the logits exactly
 * as passed in, before bias, penalties, temperature or truncation. This is
 * vLLM v1's default ("raw_logprobs"): the numbers describe the model, not the
 * request's sampling knobs, and stay comparable across requests and with a
 * full-attention reference. A token banned by logit_bias can therefore still
 * appear among the alternatives.
 *
 * Vocab-sized buffers are shared per vocab size (see scratch.ts); the caller's
 * array is never written.
 */
export class SequenceSampler {
  readonly history: TokenHistory;
  readonly vocabSize: number;
  readonly #processors: readonly LogitsProcessor[];
  /** null: greedy. */
  readonly #truncation: TruncationParams | null;
  readonly #topLogprobs: number | null;
  readonly #seed: number | null;
  #rng: Rng | null = null;
  readonly #scratch: SamplingScratch;
  readonly #maxTokens: number;
  /** The request's grammar, when its output is constrained. */
  readonly constraint: GrammarMatcher | null;

  constructor(params: SamplingParams, vocabSize: number, promptTokens: readonly number[], constraint: GrammarMatcher | null = null) {
    checkSamplingParams(params);
    this.vocabSize = vocabSize;
    this.history = new TokenHistory(vocabSize, promptTokens);

    const processors: LogitsProcessor[] = [];
    if (params.logitBias.size > 0) processors.push(new LogitBiasProcessor(params.logitBias, vocabSize));
    if (params.repetitionPenalty !== 1) {
      processors.push(new RepetitionPenaltyProcessor(this.history, params.repetitionPenalty));
    }
    if (params.presencePenalty !== 0 || params.frequencyPenalty !== 0) {
      processors.push(new PresenceFrequencyPenaltyProcessor(this.history, params.presencePenalty, params.frequencyPenalty));
    }
    this.#processors = processors;

    this.#truncation =
      params.temperature < GREEDY_TEMPERATURE ? null : { temperature: params.temperature, topK: params.topK, topP: params.topP, minP: params.minP };
    this.#topLogprobs = params.logprobs;
    this.#seed = params.seed;
    this.#scratch = sharedScratch(vocabSize);
    this.#maxTokens = params.maxTokens;
    this.constraint = constraint;
  }

  sample(logits: Float32Array): SampleResult {
    if (logits.length !== this.vocabSize) {
      throw new RangeError(`logits has length ${logits.length}, expected the vocab size ${this.vocabSize}`);
    }
    const scratch = this.#scratch;
    const work = scratch.work;
    work.set(logits);
    const { kernel } = scratch;
    const rawMax = kernel.max();
    let max = rawMax;
    // NaN, +Infinity or nothing finite: name the fault (checkLogits throws).
    if (!(max < Infinity) || max === -Infinity) checkLogits(work);
    for (let i = 0; i < this.#processors.length; i++) this.#processors[i]?.apply(work);
    const constraint = this.constraint;
    // Tokens left including this one: the grammar keeps a complete document within reach of them.
    if (constraint !== null) constraint.apply(work, this.#maxTokens - this.history.generatedLength);
    if (this.#processors.length > 0 || constraint !== null) {
      checkSampleable(work, constraint !== null);
      max = kernel.max();
    }

    let tokenId: number;
    const t = this.#truncation;
    if (t === null) {
      // Argmax, ties to the lowest id: the first entry equal to the largest (indexOf is native).
      if (!(max > -Infinity)) throw new Error('cannot sample: every token has logit -Infinity (all banned or masked)');
      tokenId = work.indexOf(max);
    } else {
      // The stream starts on first use, so greedy requests never touch the entropy pool.
      this.#rng ??= createRng(this.#seed);
      if (untruncated(t, work.length)) {
        // Temperature alone (the API default): every token's weight in one vectorized pass.
        tokenId = drawWeighted(kernel.weights, kernel.expWeights(max, t.temperature), this.#rng.nextFloat());
      } else {
        const n = truncate(t, scratch);
        tokenId = drawCategorical(scratch.ids, n, scratch.probs, this.#rng.nextFloat());
      }
    }

    let logprob: number | null = null;
    let topLogprobs: TokenLogprob[] | null = null;
    if (this.#topLogprobs !== null) {
      // log(sum(exp(raw logits))): from the kernel's row when it still holds the raw logits (no
      // processor or grammar changed them; sampling only reads it), else from a fresh copy.
      const raw = this.#processors.length === 0 && constraint === null;
      const logZ = raw ? rawMax + Math.log(kernel.expWeights(rawMax, 1)) : logSumExp(logits);
      const lp = computeLogprobs(logits, tokenId, this.#topLogprobs, scratch.ids, logZ);
      logprob = lp.logprob;
      topLogprobs = lp.topLogprobs;
    }
    this.history.record(tokenId);
    constraint?.accept(tokenId);
    return { tokenId, logprob, topLogprobs };
  }
}

/**
 * NaN or +Infinity (or nothing above -Infinity) means the forward pass broke;
 * sampling from it would be silent garbage. That is the server's fault.
 */
function checkLogits(logits: Float32Array): void {
  let anyFinite = false;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i] ?? 0;
    if (!(l < Infinity)) {
      throw new Error(`logits[${i}] is ${String(l)}: the model produced invalid logits (NaN or +Infinity)`);
    }
    if (l > -Infinity) anyFinite = true;
  }
  if (!anyFinite) throw new Error('the model produced invalid logits (every logit is -Infinity)');
}

/**
 * The model's logits were sound (checkLogits), so if nothing is left after the
 * request's own processors, the request made sampling impossible: the client's
 * error (400 naming logit_bias), not the engine's.
 */
function checkSampleable(work: Float32Array, constrained: boolean): void {
  for (let i = 0; i < work.length; i++) if ((work[i] ?? -Infinity) > -Infinity) return;
  if (constrained)
    throw new EngineError('invalid_request', 'logit_bias bans every token the response format allows here: nothing can be sampled', { field: 'logitBias' });
  throw new EngineError('invalid_request', 'logit_bias bans every token of the vocabulary: nothing can be sampled', { field: 'logitBias' });
}

/** Plain argmax; strict > keeps the lowest id on ties. */
export function argmax(logits: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const l = logits[i] ?? -Infinity;
    if (l > bestValue) {
      bestValue = l;
      best = i;
    }
  }
  if (best < 0) throw new Error('cannot sample: every token has logit -Infinity (all banned or masked)');
  return best;
}
