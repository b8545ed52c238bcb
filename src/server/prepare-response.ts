/**
 * One Responses API response prepared for generation, shared by the HTTP route
 * (/v1/responses) and the websocket (response.create): refuse what provably cannot
 * fit before tokenizing, render and tokenize the conversation off the HTTP thread,
 * route and fit it (planGeneration), and prepare a single choice with a resp_ id.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ModelCard } from '../engine/types.js';
import { prepareGeneration, type PreparedGeneration } from './choice-runner.js';
import type { ServerContext } from './context.js';
import { refuseIfCannotFit } from './early-length-check.js';
import { planGeneration } from './generation-plan.js';
import { newId } from './ids.js';
import { chatPrompt } from './prompt.js';
import type { RequestCapBody } from './request-schemas.js';
import { toSamplingParams, type WireSampling } from './sampling.js';
import type { OutputConstraint } from './structured-output.js';

export interface ResponseInput {
  readonly headers: IncomingHttpHeaders;
  readonly cap: RequestCapBody | null | undefined;
  readonly card: ModelCard;
  /** The conversation as chat messages (instructions already prepended). */
  readonly messages: Parameters<typeof chatPrompt>[2];
  /** The texts the conversation is made of, for the early length check. */
  readonly texts: readonly string[];
  readonly param: 'messages' | 'input';
  readonly requestedMaxTokens: number | null | undefined;
  readonly maxParam: string;
  readonly sampling: WireSampling;
  readonly arrivedAt: number;
  /** text.format (HTTP) as a grammar; null for plain text. */
  readonly constraint?: OutputConstraint | null;
}

export async function prepareResponse(ctx: ServerContext, input: ResponseInput): Promise<PreparedGeneration> {
  const { headers, cap, card, requestedMaxTokens, maxParam } = input;
  refuseIfCannotFit(ctx, { headers, cap, card, requestedMaxTokens, texts: input.texts, param: input.param, maxParam });
  const plan = await planGeneration(ctx, { headers, cap, prompt: await chatPrompt(ctx.engine, card, input.messages), card, requestedMaxTokens, maxParam });
  return prepareGeneration(ctx, {
    id: newId('resp_'),
    card,
    plan,
    n: 1,
    samplingFor: (index) => toSamplingParams(input.sampling, { maxTokens: plan.maxTokens, logprobs: null, index }),
    arrivedAt: input.arrivedAt,
    constraint: input.constraint ?? null,
  });
}
