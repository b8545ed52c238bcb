import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';
import { ensureReady } from '../context.js';
import { afterResponse, collectChoices, httpClose, prepareGeneration, settleShadow, startLifecycle, streamChoices, totalUsage, type StreamFormat } from '../choice-runner.js';
import { ApiError } from '../errors.js';
import { newId, unixNow } from '../ids.js';
import { appendLegacyLogprob, emptyLegacyLogprobs, legacyToken, type LegacyLogprobs } from '../logprobs.js';
import { planGeneration } from '../generation-plan.js';
import { concatLegacyLogprobs, promptLogprobs } from '../prompt-logprobs.js';
import { capObject, POLICY_HEADER } from '../policy.js';
import { completionPrompt, resolveModel } from '../prompt.js';
import { CompletionRequestSchema, type CompletionRequest } from '../request-schemas.js';
import { toSamplingParams } from '../sampling.js';
import { checkVocabulary } from '../vocabulary-check.js';
import { SseStream } from '../sse.js';
import { rejectUnsupported } from '../unsupported-params.js';
import { compileValidator } from '../validate-request.js';

const validate = compileValidator(CompletionRequestSchema);

function parseCompletionBody(raw: unknown): CompletionRequest {
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) rejectUnsupported(raw as Record<string, unknown>, 'completion');
  const body = validate(raw);
  if (body.max_tokens === 0 && body.echo !== true) {
    throw new ApiError('invalid_request', "'max_tokens' must be at least 1 unless 'echo' is true.", { param: 'max_tokens' });
  }
  if (body.stream_options !== undefined && body.stream_options !== null && body.stream !== true) {
    throw new ApiError('invalid_request', "The 'stream_options' parameter is only allowed when 'stream' is enabled.", { param: 'stream_options' });
  }
  return body;
}

export function registerCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/completions', async (request, reply) => {
    const arrivedAt = performance.now();
    const body = parseCompletionBody(request.body);
    ensureReady(ctx);
    const card = resolveModel(ctx.engine, body.model);
    checkVocabulary(body, card);
    const prompt = completionPrompt(ctx.engine, body.prompt);
    if (prompt.tokens.length === 0) throw new ApiError('invalid_request', 'The prompt is empty after tokenization.', { param: 'prompt' });
    const plan = planGeneration(ctx, { headers: request.headers, cap: body.cap, prompt, card, requestedMaxTokens: body.max_tokens, maxParam: 'max_tokens' });
    const { policy, maxTokens } = plan;
    const logprobs = body.logprobs ?? null;
    const id = newId('cmpl-');
    const created = unixNow();
    const echo = body.echo === true;
    // The prompt as given; the decoded prompt when given as ids or when an overflow mode cut it.
    const echoText = !echo
      ? ''
      : typeof body.prompt === 'string' && plan.promptTokens === prompt.tokens
        ? body.prompt
        : typeof body.prompt[0] === 'string' && plan.promptTokens === prompt.tokens
          ? body.prompt[0]
          : ctx.engine.detokenize(plan.promptTokens);
    const prep = prepareGeneration(ctx, {
      id,
      card,
      plan,
      n: body.n ?? 1,
      samplingFor: (index) => toSamplingParams(body, { maxTokens, logprobs, index }),
      arrivedAt,
    });
    const lifecycle = startLifecycle(ctx, httpClose(reply.raw));
    let handedToShadow = false;
    try {
      const echoLogprobs =
        echo && logprobs !== null ? await promptLogprobs(ctx.engine, { id, tokens: plan.promptTokens, topN: logprobs, policy }, lifecycle.signal) : null;
      const withEcho = (lp: LegacyLogprobs | null): LegacyLogprobs | null => (lp === null || echoLogprobs === null ? lp : concatLegacyLogprobs(echoLogprobs, lp, echoText.length));
      if (maxTokens === 0) {
        // echo with max_tokens 0 (lm-eval's loglikelihood): the prompt is the whole answer, nothing is generated.
        const n = body.n ?? 1;
        const choices = Array.from({ length: n }, (_, index) => ({ index, text: echoText, logprobs: echoLogprobs, finish_reason: 'length', stop_reason: null }));
        const usage = { prompt_tokens: plan.promptTokens.length, completion_tokens: 0, total_tokens: plan.promptTokens.length };
        const cap = capObject(plan, [null]);
        reply.header(POLICY_HEADER, policy.name);
        if (body.stream !== true) return { id, object: 'text_completion', created, model: card.id, choices, usage, cap };
        const includeUsage = body.stream_options?.include_usage === true;
        const sse = new SseStream(reply.raw, () => reply.hijack());
        sse.open({ [POLICY_HEADER]: policy.name });
        for (const choice of choices) await sse.send({ id, object: 'text_completion', created, model: card.id, choices: [choice], ...(includeUsage ? { usage: null } : {}), cap });
        if (includeUsage) await sse.send({ id, object: 'text_completion', created, model: card.id, choices: [], usage });
        sse.end();
        return;
      }
      if (body.stream === true) {
        const includeUsage = body.stream_options?.include_usage === true;
        const chunk = (choices: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
          id,
          object: 'text_completion',
          created,
          model: card.id,
          choices,
          ...(includeUsage ? { usage: null } : {}),
          ...extra,
        });
        const tokenLogprobs = (event: Parameters<StreamFormat['token']>[1], offset: number): LegacyLogprobs => {
          const lp = emptyLegacyLogprobs();
          appendLegacyLogprob(lp, legacyToken(event), offset + echoText.length);
          return lp;
        };
        const format: StreamFormat = {
          start: (index) => (echo ? chunk([{ index, text: echoText, logprobs: echoLogprobs, finish_reason: null }]) : null),
          token: (index, event, offset) =>
            event.text === '' && logprobs === null
              ? null
              : chunk([{ index, text: event.text, logprobs: logprobs === null ? null : tokenLogprobs(event, offset), finish_reason: null }]),
          trailingText: (index, text) => chunk([{ index, text, logprobs: null, finish_reason: null }]),
          finish: (index, done) =>
            chunk([{ index, text: '', logprobs: null, finish_reason: done.finishReason, stop_reason: done.stopReason }], { cap: capObject(plan, [done.report], done.dropped) }),
          usage: (usage) => chunk([], { usage: totalUsage(prep, usage.completionTokens) }),
        };
        const sse = new SseStream(reply.raw, () => reply.hijack());
        await streamChoices(ctx, prep, lifecycle, sse, { [POLICY_HEADER]: policy.name }, format, includeUsage);
        return;
      }
      const choices = await collectChoices(ctx, prep, lifecycle);
      if (choices === null) {
        reply.hijack();
        return;
      }
      const completionTokens = choices.reduce((sum, c) => sum + (c.done?.usage.completionTokens ?? c.tokens.length), 0);
      reply.header(POLICY_HEADER, policy.name);
      afterResponse(reply.raw, () => settleShadow(prep, choices[0]?.done));
      handedToShadow = true;
      return {
        id,
        object: 'text_completion',
        created,
        model: card.id,
        choices: choices.map((c, index) => {
          let lp: LegacyLogprobs | null = null;
          if (logprobs !== null) {
            lp = emptyLegacyLogprobs();
            for (const t of c.tokens) appendLegacyLogprob(lp, legacyToken(t.event), t.offset);
          }
          return { index, text: echoText + c.text, logprobs: withEcho(lp), finish_reason: c.done?.finishReason ?? 'abort', stop_reason: c.done?.stopReason ?? null };
        }),
        usage: totalUsage(prep, completionTokens),
        cap: capObject(plan, choices.map((c) => c.done?.report ?? null), choices[0]?.done?.dropped ?? null),
      };
    } finally {
      lifecycle.finish();
      // A stream settles it once [DONE] is written (this is then a no-op); errors and disconnects give it up.
      if (!handedToShadow) prep.shadow?.skip();
    }
  });
}
