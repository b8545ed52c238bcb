export { SequenceSampler, argmax, type SampleResult } from './sequence-sampler.js';
export { StopMatcher, type StopPush } from './stop-matcher.js';
export { TokenHistory } from './token-history.js';
export { createRng, Xoshiro128, type Rng } from './rng.js';
export {
  type LogitsProcessor,
  LogitBiasProcessor,
  RepetitionPenaltyProcessor,
  PresenceFrequencyPenaltyProcessor,
  applyLogitBias,
  applyRepetitionPenalty,
  applyPresenceFrequencyPenalty,
} from './logits-processors.js';
export { checkSamplingParams, GREEDY_TEMPERATURE } from './check-params.js';
export { computeLogprobs, type LogprobsResult } from './logprobs.js';
