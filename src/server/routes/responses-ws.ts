import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import '@fastify/websocket';
import type { WebSocket } from '@fastify/websocket';
import type { RawData } from 'ws';
import type { ServerContext } from '../context.js';
import { ensureReady, recordError } from '../context.js';
import { abortError, settleShadow, startLifecycle, type Lifecycle, type PreparedGeneration } from '../choice-runner.js';
import { ApiError, toApiError } from '../errors.js';
import { runChoices, type ChoiceDone } from '../generation.js';
import { abortKind } from '../inflight.js';
import { prepareResponse } from '../prepare-response.js';
import { ResponseEvents, responseStatus } from '../responses-events.js';
import { resolveModel, toChatMessages } from '../prompt.js';
import { ResponseCreateEventSchema } from '../request-schemas.js';
import { checkVocabulary } from '../vocabulary-check.js';
import { rejectUnsupported } from '../unsupported-params.js';
import { compileValidator } from '../validate-request.js';
import { requestConstraint } from '../guided-output.js';
import { responseFormatConstraint, textFormatConstraint } from '../structured-output.js';

const validateCreate = compileValidator(ResponseCreateEventSchema);

interface Running {
  readonly prep: PreparedGeneration;
  readonly lifecycle: Lifecycle;
}

/**
 * One websocket connection: many responses in turn, one at a time. A
 * response.create may constrain its output as HTTP requests do: chat's
 * `response_format`, the Responses API's `text.format`, or a pattern
 * extension (guided-output.ts); `cap.constraint` reports it. Events
 * follow OpenAI's Responses streaming events: response.created, then
 * response.output_text.delta..., response.output_text.done and
 * response.completed (status completed, incomplete or cancelled), or an
 * `error` event. A bad frame gets an `error` event and the socket stays open.
 */
class ResponsesSession {
  private running: Running | null = null;
  /** A response.create whose prompt is being tokenized (off the HTTP thread); it counts as in progress. */
  private preparing = false;
  private closed = false;
  private sequence = 0;

  constructor(
    private readonly socket: WebSocket,
    private readonly ctx: ServerContext,
    /** The upgrade request's headers: routing reads the policy header, the API key and rule headers from them. */
    private readonly headers: IncomingHttpHeaders,
  ) {
    socket.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    socket.on('close', () => {
      this.closed = true;
      this.running?.lifecycle.abort('client_closed');
    });
  }

  private send(event: Record<string, unknown>): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(JSON.stringify({ ...event, sequence_number: this.sequence++ }));
  }

  private sendError(err: ApiError, responseId: string | null = null, policy?: string): void {
    recordError(this.ctx, err, policy);
    this.send({ type: 'error', ...(responseId !== null ? { response_id: responseId } : {}), error: err.toBody().error });
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.sendError(new ApiError('invalid_request', 'Binary frames are not supported; send JSON text frames.'));
      return;
    }
    let event: unknown;
    try {
      event = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8'));
    } catch (err) {
      this.sendError(new ApiError('invalid_json', `The frame is not valid JSON: ${(err as Error).message}`));
      return;
    }
    const type = event !== null && typeof event === 'object' && !Array.isArray(event) ? (event as Record<string, unknown>)['type'] : undefined;
    switch (type) {
      case 'response.create':
        if (this.running !== null || this.preparing) {
          this.sendError(new ApiError('response_in_progress', 'A response is already in progress on this connection; wait for it or send response.cancel.'));
          return;
        }
        void this.start(event);
        return;
      case 'response.cancel':
        if (this.running === null) {
          this.sendError(new ApiError('invalid_request', 'No response is in progress.', { param: 'type' }));
          return;
        }
        this.running.lifecycle.abort('cancelled');
        return;
      default:
        this.sendError(
          new ApiError('unknown_event', `Unknown event type ${JSON.stringify(type ?? null)}; expected 'response.create' or 'response.cancel'.`, {
            param: 'type',
          }),
        );
    }
  }

  private async prepare(event: unknown): Promise<PreparedGeneration> {
    const arrivedAt = performance.now();
    rejectUnsupported(event as Record<string, unknown>, 'response');
    const body = validateCreate(event);
    ensureReady(this.ctx);
    const card = resolveModel(this.ctx.engine, body.model);
    checkVocabulary(body, card);
    const requested = body.max_output_tokens ?? body.max_completion_tokens ?? body.max_tokens;
    const maxParam = body.max_output_tokens != null ? 'max_output_tokens' : body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
    if (body.response_format != null && body.text?.format != null) {
      throw new ApiError('invalid_request', "Give the output format once: 'response_format' (chat's) or 'text.format' (the Responses API's).", {
        param: 'text.format',
      });
    }
    const format = body.text?.format != null ? textFormatConstraint(body.text.format) : responseFormatConstraint(body.response_format);
    const constraint = requestConstraint(body, format, body.text?.format != null ? 'text.format' : 'response_format', null);
    return prepareResponse(this.ctx, {
      headers: this.headers,
      cap: body.cap,
      card,
      messages: body.messages,
      texts: toChatMessages(body.messages).map((m) => m.content),
      param: 'messages',
      requestedMaxTokens: requested,
      maxParam,
      sampling: body,
      arrivedAt,
      constraint,
    });
  }

  private async start(event: unknown): Promise<void> {
    let prep: PreparedGeneration;
    this.preparing = true;
    try {
      prep = await this.prepare(event);
    } catch (err) {
      this.sendError(toApiError(err));
      return;
    } finally {
      this.preparing = false;
    }
    if (this.closed) {
      prep.shadow?.skip();
      return;
    }
    // The socket's own close handler aborts; the lifecycle needs no transport hook.
    const lifecycle = startLifecycle(this.ctx, () => () => undefined);
    this.running = { prep, lifecycle };
    void this.run(prep, lifecycle).finally(() => {
      lifecycle.finish();
      this.running = null;
      // No-op when run() handed it over; errors and cancellations give it up.
      prep.shadow?.skip();
    });
  }

  private async run(prep: PreparedGeneration, lifecycle: Lifecycle): Promise<void> {
    const events = new ResponseEvents(prep);
    for (const e of events.opening()) this.send(e);
    let text = '';
    let done: ChoiceDone | null = null;
    try {
      for await (const { event } of runChoices(this.ctx.engine, prep.requests, lifecycle.signal, this.ctx.metrics, prep.arrivedAt)) {
        if (event.text !== '') {
          text += event.text;
          this.send(events.delta(event.text));
        }
        if (event.type === 'done') done = event;
      }
    } catch (err) {
      const apiError = toApiError(err);
      if (apiError.statusCode >= 500) this.ctx.log.error({ err, requestId: prep.id }, 'websocket response failed');
      this.sendError(apiError, prep.id, prep.policy.name);
      return;
    }
    const kind = abortKind(lifecycle.signal);
    if (kind === 'client_closed') return;
    const failure = abortError(lifecycle.signal);
    if (failure !== null) {
      this.sendError(failure, prep.id, prep.policy.name);
      return;
    }
    for (const e of events.closing(responseStatus(kind === 'cancelled', done), text, done)) this.send(e);
    settleShadow(prep, done);
  }
}

export function registerResponsesWebsocket(app: FastifyInstance, ctx: ServerContext): void {
  app.route({
    method: 'GET',
    url: '/v1/responses',
    handler: async () => {
      throw new ApiError('upgrade_required', '/v1/responses is a websocket endpoint: connect with a websocket upgrade.');
    },
    wsHandler: (socket, request) => {
      new ResponsesSession(socket, ctx, request.headers);
    },
  });
}
