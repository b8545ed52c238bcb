import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';
import { ensureReady } from '../context.js';
import {
  afterResponse,
  collectChoices,
  httpClose,
  mergePrepared,
  prepareGeneration,
  settleShadow,
  startLifecycle,
  streamChoices,
  totalUsage,
  cachedPromptTokens,
  type StreamFormat,
} from '../choice-runner.js';
import { ApiError } from '../errors.js';
import { newId, unixNow } from '../ids.js';
import { appendLegacyLogprob, emptyLegacyLogprobs, legacyToken, type LegacyLogprobs } from '../logprobs.js';
import { planGeneration } from '../generation-plan.js';
import { concatLegacyLogprobs, promptLogprobs } from '../prompt-logprobs.js';
import { capObject, POLICY_HEADER } from '../policy.js';
import { completionPrompts, resolveModel } from '../prompt.js';
import { refuseIfCannotFit } from '../early-length-check.js';
import { CompletionRequestSchema, type CompletionRequest } from '../request-schemas.js';
import { toSamplingParams } from '../sampling.js';
import { checkVocabulary } from '../vocabulary-check.js';
import { SseStream } from '../sse.js';
import { rejectUnsupported } from '../unsupported-params.js';
import { compileValidator } from '../validate-request.js';
import { constraintCap, responseFormatConstraint } from '../structured-output.js';
import { requestConstraint } from '../guided-output.js';

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

/** The echoed text of prompt `p`: as given when a string, else (ids, or cut by an overflow mode) decoded. */
async function echoTextOf(
  ctx: ServerContext,
  prompt: CompletionRequest['prompt'],
  p: number,
  tokens: readonly number[],
  planned: readonly number[],
): Promise<string> {
  const given = typeof prompt === 'string' ? prompt : prompt[p];
  return typeof given === 'string' && planned === tokens ? given : ctx.engine.detokenize(planned);
}

export function registerCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/completions', async (request, reply) => {
    const arrivedAt = performance.now();
    const body = parseCompletionBody(request.body);
    ensureReady(ctx);
    const card = resolveModel(ctx.engine, body.model);
    checkVocabulary(body, card);
    const texts = typeof body.prompt === 'string' ? [body.prompt] : body.prompt.filter((p): p is string => typeof p === 'string');
    refuseIfCannotFit(ctx, {
      headers: request.headers,
      cap: body.cap,
      card,
      requestedMaxTokens: body.max_tokens,
      texts,
      param: 'prompt',
      maxParam: 'max_tokens',
    });
    const logprobs = body.logprobs ?? null;
    const id = newId('cmpl-');
    const created = unixNow();
    const n = body.n ?? 1;
    const echo = body.echo === true;
    const inputs = await completionPrompts(ctx.engine, body.prompt);
    // One plan per prompt of a list (each is routed and fitted to the window on its own).
    const parts: { prompt: (typeof inputs)[number]; plan: Awaited<ReturnType<typeof planGeneration>>; echoText: string }[] = [];
    for (const [p, prompt] of inputs.entries()) {
      if (prompt.tokens.length === 0)
        throw new ApiError('invalid_request', 'The prompt is empty after tokenization.', { param: inputs.length === 1 ? 'prompt' : `prompt[${p}]` });
      const plan = await planGeneration(ctx, {
        headers: request.headers,
        cap: body.cap,
        prompt,
        card,
        requestedMaxTokens: body.max_tokens,
        maxParam: 'max_tokens',
      });
      parts.push({ prompt, plan, echoText: echo ? await echoTextOf(ctx, body.prompt, p, prompt.tokens, plan.promptTokens) : '' });
    }
    const first = parts[0];
    if (first === undefined) throw new ApiError('invalid_request', 'The prompt list is empty.', { param: 'prompt' });
    const { policy } = first.plan;
    const partOf = (index: number): (typeof parts)[number] => parts[Math.floor(index / n)] ?? first;
    const constraint = requestConstraint(body, responseFormatConstraint(body.response_format), 'response_format', null);
    const preps = parts.map(({ plan }, p) =>
      prepareGeneration(ctx, {
        id: parts.length === 1 ? id : `${id}-p${p}`,
        card,
        plan,
        n,
        samplingFor: (index) => toSamplingParams(body, { maxTokens: plan.maxTokens, logprobs, index }),
        arrivedAt,
        constraint,
      }),
    );
    const prep = mergePrepared(preps);
    const lifecycle = startLifecycle(ctx, httpClose(reply.raw));
    let handedToShadow = false;
    try {
      const echoLogprobs: (LegacyLogprobs | null)[] = [];
      for (const [p, part] of parts.entries()) {
        echoLogprobs.push(
          echo && logprobs !== null
            ? await promptLogprobs(
                ctx.engine,
                { id: `${id}-p${p}`, tokens: part.plan.promptTokens, topN: logprobs, policy: part.plan.policy },
                lifecycle.signal,
              )
            : null,
        );
      }
      const echoLogprobsOf = (index: number): LegacyLogprobs | null => echoLogprobs[Math.floor(index / n)] ?? null;
      const withEcho = (index: number, lp: LegacyLogprobs | null): LegacyLogprobs | null => {
        const prompt = echoLogprobsOf(index);
        return lp === null || prompt === null ? lp : concatLegacyLogprobs(prompt, lp, partOf(index).echoText.length);
      };
      if (body.max_tokens === 0) {
        // echo with max_tokens 0 (lm-eval's loglikelihood): the prompt is the whole answer, nothing is generated.
        const choices = prep.requests.map((_, index) => ({
          index,
          text: partOf(index).echoText,
          logprobs: echoLogprobsOf(index),
          finish_reason: 'length',
          stop_reason: null,
        }));
        const usage = totalUsage(prep, 0, 0);
        const cap = capObject(first.plan, [null]);
        for (const p of preps) p.shadow?.skip();
        reply.header(POLICY_HEADER, policy.name);
        if (body.stream !== true) return { id, object: 'text_completion', created, model: card.id, choices, usage, cap };
        const includeUsage = body.stream_options?.include_usage === true;
        const sse = new SseStream(reply.raw, () => {
          reply.hijack();
        });
        sse.open({ [POLICY_HEADER]: policy.name });
        for (const choice of choices)
          await sse.send({ id, object: 'text_completion', created, model: card.id, choices: [choice], ...(includeUsage ? { usage: null } : {}), cap });
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
        const tokenLogprobs = (index: number, event: Parameters<StreamFormat['token']>[1], offset: number): LegacyLogprobs => {
          const lp = emptyLegacyLogprobs();
          appendLegacyLogprob(lp, legacyToken(event), offset + partOf(index).echoText.length);
          return lp;
        };
        const format: StreamFormat = {
          start: (index) => (echo ? chunk([{ index, text: partOf(index).echoText, logprobs: echoLogprobsOf(index), finish_reason: null }]) : null),
          token: (index, event, offset) =>
            event.text === '' && logprobs === null
              ? null
              : chunk([{ index, text: event.text, logprobs: logprobs === null ? null : tokenLogprobs(index, event, offset), finish_reason: null }]),
          trailingText: (index, text) => chunk([{ index, text, logprobs: null, finish_reason: null }]),
          finish: (index, done) =>
            chunk([{ index, text: '', logprobs: null, finish_reason: done.finishReason, stop_reason: done.stopReason }], {
              cap: capObject(partOf(index).plan, [done.report], done.dropped, constraintCap(constraint, [done.constraint])),
            }),
          usage: (usage, cached) => chunk([], { usage: totalUsage(prep, usage.completionTokens, cached) }),
        };
        const sse = new SseStream(reply.raw, () => {
          reply.hijack();
        });
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
          return {
            index,
            text: partOf(index).echoText + c.text,
            logprobs: withEcho(index, lp),
            finish_reason: c.done?.finishReason ?? 'abort',
            stop_reason: c.done?.stopReason ?? null,
          };
        }),
        usage: totalUsage(prep, completionTokens, cachedPromptTokens(choices.map((c) => c.done))),
        cap: capObject(
          first.plan,
          choices.map((c) => c.done?.report ?? null),
          choices[0]?.done?.dropped ?? null,
          constraintCap(
            constraint,
            choices.map((c) => c.done?.constraint),
          ),
        ),
      };
    } finally {
      lifecycle.finish();
      // A stream settles it once [DONE] is written (this is then a no-op); errors and disconnects give it up.
      if (!handedToShadow) for (const p of preps) p.shadow?.skip();
    }
  });
}
