import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';
import { ensureReady } from '../context.js';
import {
  afterResponse,
  collectChoices,
  httpClose,
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
import { chatLogprob } from '../logprobs.js';
import { planGeneration } from '../generation-plan.js';
import { capObject, POLICY_HEADER } from '../policy.js';
import { chatPrompt, resolveModel, toChatMessages } from '../prompt.js';
import { refuseIfCannotFit } from '../early-length-check.js';
import { ChatCompletionRequestSchema, type ChatCompletionRequest } from '../request-schemas.js';
import { toSamplingParams } from '../sampling.js';
import { checkVocabulary } from '../vocabulary-check.js';
import { SseStream } from '../sse.js';
import { rejectUnsupported } from '../unsupported-params.js';
import { compileValidator } from '../validate-request.js';
import { constraintCap, responseFormatConstraint } from '../structured-output.js';
import { parseToolCalls, ToolCallStream, toolsSetup, wireToolCalls } from '../tools.js';
import { requestConstraint } from '../guided-output.js';

const validate = compileValidator(ChatCompletionRequestSchema);

/** Parses and checks a chat body; shared with the websocket route. */
export function parseChatBody(raw: unknown): ChatCompletionRequest {
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) rejectUnsupported(raw as Record<string, unknown>, 'chat');
  const body = validate(raw);
  if (body.stream_options !== undefined && body.stream_options !== null && body.stream !== true) {
    throw new ApiError('invalid_request', "The 'stream_options' parameter is only allowed when 'stream' is enabled.", { param: 'stream_options' });
  }
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.logprobs !== true) {
    throw new ApiError('invalid_request', "'top_logprobs' requires 'logprobs' to be true.", { param: 'top_logprobs' });
  }
  return body;
}

export function registerChatCompletions(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/v1/chat/completions', async (request, reply) => {
    const arrivedAt = performance.now();
    const body = parseChatBody(request.body);
    ensureReady(ctx);
    const card = resolveModel(ctx.engine, body.model);
    checkVocabulary(body, card);
    const maxParam = body.max_completion_tokens !== undefined && body.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens';
    const tools = toolsSetup(body, card, ctx.config.model.toolCallFormat);
    // Forced calls, auto calls around the text constraint, or the text constraint (response_format or a pattern extension).
    const constraint = requestConstraint(body, responseFormatConstraint(body.response_format), 'response_format', tools);
    refuseIfCannotFit(ctx, {
      headers: request.headers,
      cap: body.cap,
      card,
      requestedMaxTokens: body.max_completion_tokens ?? body.max_tokens,
      texts: toChatMessages(body.messages).map((m) => m.content),
      param: 'messages',
      maxParam,
    });
    const plan = await planGeneration(ctx, {
      headers: request.headers,
      cap: body.cap,
      prompt: await chatPrompt(ctx.engine, card, body.messages, tools),
      card,
      requestedMaxTokens: body.max_completion_tokens ?? body.max_tokens,
      maxParam,
    });
    const { policy, maxTokens } = plan;
    const logprobs = body.logprobs === true ? (body.top_logprobs ?? 0) : null;
    const id = newId('chatcmpl-');
    const created = unixNow();
    const prep = prepareGeneration(ctx, {
      id,
      card,
      plan,
      n: body.n ?? 1,
      samplingFor: (index) => toSamplingParams(body, { maxTokens, logprobs, index }),
      arrivedAt,
      constraint,
    });
    const lifecycle = startLifecycle(ctx, httpClose(reply.raw));
    let handedToShadow = false;
    try {
      if (body.stream === true) {
        const includeUsage = body.stream_options?.include_usage === true;
        const chunk = (choices: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
          id,
          object: 'chat.completion.chunk',
          created,
          model: card.id,
          choices,
          ...(includeUsage ? { usage: null } : {}),
          ...extra,
        });
        // Tool calls are cut out of the content as they complete and sent as tool_calls deltas.
        const streams = prep.requests.map(() => (tools === null ? null : new ToolCallStream(tools.format)));
        const callsSent = prep.requests.map(() => 0);
        const delta = (index: number, text: string, final: boolean): Record<string, unknown> | null => {
          const s = streams[index];
          if (s === null || s === undefined) return text === '' ? null : { content: text };
          const a = s.push(text);
          const b = final ? s.flush() : { content: '', calls: [] };
          const content = a.content + b.content;
          const calls = [...a.calls, ...b.calls];
          const first = callsSent[index] ?? 0;
          callsSent[index] = first + calls.length;
          if (content === '' && calls.length === 0) return null;
          return {
            ...(content !== '' ? { content } : {}),
            ...(calls.length > 0 ? { tool_calls: wireToolCalls(calls).map((c, k) => ({ index: first + k, ...c })) } : {}),
          };
        };
        const format: StreamFormat = {
          start: (index) => chunk([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]),
          token: (index, event) => {
            const d = delta(index, event.text, false);
            if (d === null && logprobs === null) return null;
            return chunk([
              { index, delta: d ?? {}, logprobs: logprobs === null ? null : { content: [chatLogprob(event)], refusal: null }, finish_reason: null },
            ]);
          },
          trailingText: (index, text) => chunk([{ index, delta: delta(index, text, false) ?? {}, logprobs: null, finish_reason: null }]),
          finish: (index, done) => {
            const d = delta(index, '', true);
            const reason = (callsSent[index] ?? 0) > 0 && done.finishReason === 'stop' ? 'tool_calls' : done.finishReason;
            return chunk([{ index, delta: d ?? {}, logprobs: null, finish_reason: reason, stop_reason: done.stopReason }], {
              cap: capObject(plan, [done.report], done.dropped, constraintCap(constraint, [done.constraint])),
            });
          },
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
        object: 'chat.completion',
        created,
        model: card.id,
        choices: choices.map((c, index) => {
          const parsed = tools === null ? null : parseToolCalls(c.text, tools.format);
          const called = parsed !== null && parsed.calls.length > 0;
          const reason = c.done?.finishReason ?? 'abort';
          return {
            index,
            message: called
              ? { role: 'assistant', content: parsed.content, tool_calls: wireToolCalls(parsed.calls), refusal: null }
              : { role: 'assistant', content: c.text, refusal: null },
            logprobs: logprobs === null ? null : { content: c.tokens.map((t) => chatLogprob(t.event)), refusal: null },
            finish_reason: called && reason === 'stop' ? 'tool_calls' : reason,
            stop_reason: c.done?.stopReason ?? null,
          };
        }),
        usage: totalUsage(prep, completionTokens, cachedPromptTokens(choices.map((c) => c.done))),
        cap: capObject(
          plan,
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
      if (!handedToShadow) prep.shadow?.skip();
    }
  });
}
