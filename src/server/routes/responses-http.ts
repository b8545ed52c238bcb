/**
 * POST /v1/responses over HTTP: OpenAI's Responses API, text in and text out,
 * as a JSON response object or (stream: true) as SSE with `event:` lines. The
 * objects and events come from responses-events.ts, shared with the websocket
 * /v1/responses. `input` is a string or message items; `instructions` become a
 * system message (not carried to later turns, as OpenAI's are not);
 * `previous_response_id` continues a stored conversation (response-store.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.js';
import { ensureReady, recordError } from '../context.js';
import { abortError, afterResponse, collectChoices, httpClose, settleShadow, startLifecycle } from '../choice-runner.js';
import { ApiError, toApiError } from '../errors.js';
import { runChoices, type ChoiceDone, type ChoiceEvent } from '../generation.js';
import type { ChatMessage } from '../../model/tokenizer-types.js';
import { POLICY_HEADER } from '../policy.js';
import { prepareResponse } from '../prepare-response.js';
import { textFormatConstraint } from '../structured-output.js';
import { resolveModel, toChatMessages } from '../prompt.js';
import { ResponsesRequestSchema, type ResponsesRequest } from '../request-schemas.js';
import { ResponseEvents, responseStatus, type ResponseEvent } from '../responses-events.js';
import { ResponseStore } from '../response-store.js';
import { SseStream } from '../sse.js';
import { compileValidator } from '../validate-request.js';
import { checkVocabulary } from '../vocabulary-check.js';

const validate = compileValidator(ResponsesRequestSchema);

/** The conversation so far (previous response's), then this request's input. */
function conversation(body: ResponsesRequest, store: ResponseStore): ChatMessage[] {
  const previousId = body.previous_response_id;
  let history: readonly ChatMessage[] = [];
  if (previousId !== undefined && previousId !== null) {
    const found = store.get(previousId);
    if (found === undefined) {
      throw new ApiError('not_found', `Previous response with id '${previousId}' not found (unknown, or evicted from the server's bounded store).`, {
        param: 'previous_response_id',
      });
    }
    history = found;
  }
  const input =
    typeof body.input === 'string'
      ? [{ role: 'user' as const, content: body.input }]
      : toChatMessages(
          body.input.map((m) => ({
            role: m.role,
            content: typeof m.content === 'string' ? m.content : m.content.map((p) => ({ type: 'text' as const, text: p.text })),
          })),
        );
  return [...history, ...input];
}

export function registerResponsesHttp(app: FastifyInstance, ctx: ServerContext, store: ResponseStore = new ResponseStore()): void {
  app.post('/v1/responses', async (request, reply) => {
    const arrivedAt = performance.now();
    const body = validate(request.body);
    ensureReady(ctx);
    const card = resolveModel(ctx.engine, body.model);
    checkVocabulary(body, card);
    const messages = conversation(body, store);
    const instructions = body.instructions ?? null;
    const withInstructions: ChatMessage[] = instructions === null ? messages : [{ role: 'system', content: instructions }, ...messages];
    const prep = await prepareResponse(ctx, {
      headers: request.headers,
      cap: body.cap,
      card,
      messages: withInstructions,
      texts: withInstructions.map((m) => m.content),
      param: 'input',
      requestedMaxTokens: body.max_output_tokens,
      maxParam: 'max_output_tokens',
      sampling: body,
      arrivedAt,
      constraint: textFormatConstraint(body.text?.format),
    });
    const events = new ResponseEvents(prep, { previous_response_id: body.previous_response_id ?? null, instructions });
    const remember = (text: string): void => store.put(prep.id, [...messages, { role: 'assistant', content: text }]);
    const lifecycle = startLifecycle(ctx, httpClose(reply.raw));
    let handedToShadow = false;
    try {
      if (body.stream !== true) {
        const choices = await collectChoices(ctx, prep, lifecycle);
        if (choices === null) {
          reply.hijack();
          return;
        }
        const choice = choices[0];
        const done = choice?.done ?? null;
        const text = choice?.text ?? '';
        remember(text);
        reply.header(POLICY_HEADER, prep.policy.name);
        afterResponse(reply.raw, () => settleShadow(prep, done));
        handedToShadow = true;
        return events.response(responseStatus(false, done), text, done);
      }
      // The first engine event is awaited before any byte is sent, so rejections keep their HTTP status.
      const iterator = runChoices(ctx.engine, prep.requests, lifecycle.signal, ctx.metrics, prep.arrivedAt);
      let step: IteratorResult<ChoiceEvent>;
      try {
        step = await iterator.next();
      } catch (err) {
        await iterator.return(undefined);
        throw err;
      }
      const sse = new SseStream(reply.raw, () => {
        reply.hijack();
      });
      sse.open({ [POLICY_HEADER]: prep.policy.name });
      let sequence = 0;
      const send = (e: ResponseEvent): Promise<void> => sse.sendEvent(e.type, { ...e, sequence_number: sequence++ });
      let text = '';
      let done: ChoiceDone | null = null;
      try {
        for (const e of events.opening()) await send(e);
        while (step.done !== true) {
          const { event } = step.value;
          if (event.text !== '') {
            text += event.text;
            await send(events.delta(event.text));
          }
          if (event.type === 'done') done = event;
          step = await iterator.next();
        }
        const failure = abortError(lifecycle.signal);
        if (failure !== null) throw failure;
        if (!lifecycle.signal.aborted) {
          for (const e of events.closing(responseStatus(false, done), text, done)) await send(e);
          remember(text);
        }
      } catch (thrown) {
        const err = toApiError(thrown);
        if (err.statusCode >= 500) ctx.log.error({ err: thrown, requestId: prep.id }, 'response failed mid-stream');
        recordError(ctx, err, prep.policy.name);
        await send({ type: 'error', code: err.code, message: err.message, param: err.param });
      } finally {
        await iterator.return(undefined);
        sse.close();
        settleShadow(prep, done);
        handedToShadow = true;
      }
    } finally {
      lifecycle.finish();
      if (!handedToShadow) prep.shadow?.skip();
    }
  });
}
