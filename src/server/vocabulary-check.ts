/**
 * Token ids a request names outside its model's vocabulary are the client's
 * error: a 400 naming the parameter and every bad id, checked here on the HTTP
 * side before anything reaches the engine (which would otherwise fail the
 * request as a 500).
 */
import type { ModelCard } from '../engine/types.js';
import { ApiError } from './errors.js';
import type { WireSampling } from './sampling.js';

function outOfVocabulary(ids: Iterable<number>, vocabSize: number): number[] {
  const bad = new Set<number>();
  for (const id of ids) if (!(id >= 0 && id < vocabSize)) bad.add(id);
  return [...bad];
}

function reject(param: string, bad: readonly (number | string)[], card: ModelCard): ApiError {
  const list = bad.map(String).join(', ');
  return new ApiError(
    'invalid_request',
    `Invalid ${bad.length === 1 ? 'token id' : 'token ids'} in '${param}': ${list} ${bad.length === 1 ? 'is' : 'are'} outside the vocabulary of model \`${card.id}\` (ids 0 to ${card.vocabSize - 1}).`,
    { param },
  );
}

/** Throws a 400 for out-of-vocabulary `logit_bias` keys (all of them named), then `stop_token_ids`. */
export function checkVocabulary(body: WireSampling, card: ModelCard): void {
  const biasKeys = Object.keys(body.logit_bias ?? {});
  const badKeys = biasKeys.filter((key) => outOfVocabulary([Number(key)], card.vocabSize).length > 0);
  if (badKeys.length > 0) throw reject('logit_bias', badKeys, card);
  const badStops = outOfVocabulary(body.stop_token_ids ?? [], card.vocabSize);
  if (badStops.length > 0) throw reject('stop_token_ids', badStops, card);
}
