import { DEFAULT_SAMPLING, type SamplingParams } from '../engine/types.js';

/** The sampling fields common to chat, completions and websocket requests, as they arrive. */
export interface WireSampling {
  readonly temperature?: number | null;
  readonly top_p?: number | null;
  readonly top_k?: number | null;
  readonly min_p?: number | null;
  readonly presence_penalty?: number | null;
  readonly frequency_penalty?: number | null;
  readonly repetition_penalty?: number | null;
  readonly logit_bias?: Readonly<Record<string, number>> | null;
  readonly seed?: number | null;
  readonly stop?: string | readonly string[] | null;
  readonly stop_token_ids?: readonly number[] | null;
  readonly ignore_eos?: boolean | null;
}

/**
 * Request value, else the engine default (DEFAULT_SAMPLING). Choice `index` of
 * an n>1 request samples with seed+index, so a seeded request stays
 * reproducible while its choices differ.
 */
export function toSamplingParams(body: WireSampling, options: { maxTokens: number; logprobs: number | null; index: number }): SamplingParams {
  const d = DEFAULT_SAMPLING;
  const logitBias = new Map<number, number>();
  for (const [key, value] of Object.entries(body.logit_bias ?? {})) logitBias.set(Number(key), value);
  const stop = body.stop === null || body.stop === undefined ? [] : typeof body.stop === 'string' ? [body.stop] : [...body.stop];
  return {
    temperature: body.temperature ?? d.temperature,
    topP: body.top_p ?? d.topP,
    topK: body.top_k ?? d.topK,
    minP: body.min_p ?? d.minP,
    presencePenalty: body.presence_penalty ?? d.presencePenalty,
    frequencyPenalty: body.frequency_penalty ?? d.frequencyPenalty,
    repetitionPenalty: body.repetition_penalty ?? d.repetitionPenalty,
    logitBias,
    seed: body.seed === null || body.seed === undefined ? null : body.seed + options.index,
    maxTokens: options.maxTokens,
    stop,
    stopTokenIds: [...(body.stop_token_ids ?? [])],
    ignoreEos: body.ignore_eos ?? d.ignoreEos,
    logprobs: options.logprobs,
  };
}
