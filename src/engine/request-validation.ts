/**
 * What a generate request must satisfy on its own, before it is queued: a non-empty
 * prompt that fits the window (unless a policy bounds the cache or compresses the
 * prompt, or it is a scoring pass), token ids inside the vocabulary, and a
 * logit_bias that leaves something to sample. Throws EngineError naming the
 * parameter; engine state (ids in use, queue room) is the core's to check.
 */
import { EngineError } from './errors.js';
import { LOGIT_BIAS_BAN } from './sampling/logits-processors.js';
import type { GenerateRequest } from './types.js';

export interface RequestLimits {
  readonly vocabSize: number;
  readonly contextLength: number;
}

/** What the request's policy runtime allows, and whether it is a scoring pass. */
export interface RequestMode {
  readonly scoring: boolean;
  /** The policy bounds the cache (the window limits the cache, not the prompt) or shrinks the prompt (checked once shrunk). */
  readonly promptMayExceedWindow: boolean;
}

export function validateRequest(request: GenerateRequest, limits: RequestLimits, mode: RequestMode): void {
  const { vocabSize, contextLength } = limits;
  const n = request.promptTokens.length;
  if (n === 0) throw new EngineError('invalid_request', 'the prompt is empty (0 tokens)', { field: 'promptTokens' });
  if (!mode.promptMayExceedWindow && !mode.scoring && n >= contextLength) {
    throw new EngineError(
      'context_length_exceeded',
      `This model's maximum context length is ${contextLength} tokens. However, your request has ${n} prompt tokens, leaving no room to generate.`,
      { field: 'promptLength' },
    );
  }
  for (const id of request.forcedTokens ?? []) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new EngineError('invalid_request', `forced token id ${id} is outside the vocabulary [0, ${vocabSize})`);
    }
  }
  for (const id of request.promptTokens) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new EngineError('invalid_request', `token id ${id} is outside the vocabulary [0, ${vocabSize})`, { field: 'promptTokens' });
    }
  }
  let banned = 0;
  for (const [id, bias] of request.sampling.logitBias) if (id >= 0 && id < vocabSize && bias <= LOGIT_BIAS_BAN) banned += 1;
  if (banned >= vocabSize) {
    throw new EngineError('invalid_request', 'logit_bias bans every token of the vocabulary: nothing can be sampled', { field: 'logitBias' });
  }
}
