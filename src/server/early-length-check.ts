/**
 * Refuses, before tokenizing, a prompt that provably cannot fit: its UTF-8
 * length over the most bytes one token can stand for (model/token-bound.ts) is a
 * lower bound on its tokens, and when even that bound overflows the window under
 * overflow mode `error`, the answer is already known (400 context_length_exceeded)
 * and tokenizing megabytes to give it would only cost time.
 *
 * It refuses only when the outcome cannot depend on the exact count: the
 * tokenizer has a provable bound, no routing rule matches on prompt length, the
 * routed policy neither evicts nor compresses, and the overflow mode that applies
 * is `error`. Otherwise it does nothing and the prompt is tokenized as usual.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { resolveOverflow } from '../cap/overflow-settings.js';
import type { ModelCard } from '../engine/types.js';
import { minTokensFor } from '../model/token-bound.js';
import { requestNeeds } from '../policies/methods.js';
import type { ServerContext } from './context.js';
import { ApiError } from './errors.js';
import { bearerKey } from './policy.js';
import { contextLimit } from './prompt.js';
import type { RequestCapBody } from './request-schemas.js';

export interface EarlyCheckInput {
  readonly headers: IncomingHttpHeaders;
  readonly cap: RequestCapBody | null | undefined;
  readonly card: ModelCard;
  readonly requestedMaxTokens: number | null | undefined;
  /** The texts the prompt is made of (for a chat, each message's content: the template only adds). */
  readonly texts: readonly string[];
  readonly param: 'prompt' | 'messages' | 'input';
  readonly maxParam: string;
}

export function refuseIfCannotFit(ctx: ServerContext, input: EarlyCheckInput): void {
  const maxBytes = input.card.maxBytesPerToken;
  if (maxBytes === undefined || maxBytes === null) return;
  if (ctx.config.routing.rules.some((r) => r.match.minPromptTokens !== undefined || r.match.maxPromptTokens !== undefined)) return;
  let bytes = 0;
  for (const t of input.texts) bytes += Buffer.byteLength(t, 'utf8');
  const atLeast = minTokensFor(bytes, maxBytes);
  const window = contextLimit(input.card, ctx.config);
  const requested = input.requestedMaxTokens ?? null;
  const fits = requested === null ? atLeast < window : atLeast + requested <= window;
  if (fits) return;
  const decision = ctx.router.route({ promptTokens: atLeast, headers: input.headers, apiKey: bearerKey(input.headers), cap: input.cap });
  if (requestNeeds(decision.policy).promptMayExceedWindow) return;
  const { spec } = resolveOverflow(input.cap?.overflow, decision.overflow, ctx.config.model.overflow);
  if (spec.mode !== 'error') return;
  const said =
    requested === null
      ? `However, your request has at least ${atLeast} input tokens (${bytes} bytes of text; no token of this model stands for more than ${maxBytes} bytes), which leaves no room for a completion.`
      : `However, you requested at least ${atLeast + requested} tokens (at least ${atLeast} in the input: ${bytes} bytes of text, no token of this model stands for more than ${maxBytes} bytes; ${requested} in the completion).`;
  const fix = requested === null ? 'Please reduce the length of the input.' : 'Please reduce the length of the input or of the completion.';
  const param = requested === null || atLeast >= window ? input.param : input.maxParam;
  throw new ApiError('context_length_exceeded', `This model's maximum context length is ${window} tokens. ${said} ${fix}`, { param });
}
