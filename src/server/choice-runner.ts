import type { ServerResponse } from 'node:http';
import type { ShadowTicket } from '../cap/shadow.js';
import type { GenerateRequest, ModelCard, SamplingParams, Usage } from '../engine/types.js';
import { requestNeeds } from '../policies/methods.js';
import type { Policy } from '../policies/registry.js';
import type { ServerContext } from './context.js';
import type { GenerationPlan } from './generation-plan.js';
import { recordError } from './context.js';
import { ApiError, toApiError } from './errors.js';
import { runChoices, type ChoiceDone, type ChoiceEvent, type TokenOut } from './generation.js';
import { abortKind, GenerationAbort } from './inflight.js';
import type { SseStream } from './sse.js';
import type { OutputConstraint } from './structured-output.js';

/** A validated request, ready for the engine: one GenerateRequest per choice. */
export interface PreparedGeneration {
  readonly id: string;
  readonly card: ModelCard;
  readonly policy: Policy;
  readonly plan: GenerationPlan;
  readonly promptTokens: readonly number[];
  /** Prompt tokens the usage counts: promptTokens' length, or every prompt's of a merged batch. */
  readonly promptTokenCount: number;
  readonly requests: readonly GenerateRequest[];
  readonly arrivedAt: number;
  /** Set when shadow fidelity sampled this request: choice 0 captures its rows; settle it when the response is out. */
  readonly shadow: ShadowTicket | null;
  readonly constraint: OutputConstraint | null;
}

export interface GenerationSpec {
  readonly id: string;
  readonly card: ModelCard;
  readonly plan: GenerationPlan;
  readonly n: number;
  samplingFor(index: number): SamplingParams;
  readonly arrivedAt: number;
  /** response_format / tools: the grammar every choice's output must follow. */
  readonly constraint?: OutputConstraint | null;
}

/** Builds the engine requests; decides up front whether shadow fidelity samples this request. */
export function prepareGeneration(ctx: ServerContext, spec: GenerationSpec): PreparedGeneration {
  const { id, plan, n } = spec;
  const { policy, promptTokens } = plan;
  // The reference is the prompt the engine gets: for compression that is the original, uncompressed one.
  const shadow = ctx.shadow.sample(policy, plan.maxTokens, promptTokens, plan.contextWindow);
  // The method says what it needs sent (segments to cut along; a target and dropped spans when it shrinks the prompt).
  const needs = requestNeeds(policy);
  const shrinks = needs.shrink !== null;
  const requests = Array.from({ length: n }, (_, index): GenerateRequest => ({
    id: n === 1 ? id : `${id}-${index}`,
    promptTokens,
    sampling: spec.samplingFor(index),
    policy: policy.name,
    ...(policy.kind !== 'none' ? { servingPolicy: policy } : {}),
    ...(needs.segments && plan.segments !== null ? { segments: plan.segments } : {}),
    ...(shrinks && plan.compressionRate !== null ? { compressionRate: plan.compressionRate } : {}),
    ...(shrinks && plan.returnDropped ? { returnDropped: true } : {}),
    // One choice is enough to measure the policy; capturing all n would multiply the memory.
    ...(shadow !== null && index === 0 ? { captureLogprobs: ctx.shadow.captureSteps } : {}),
    ...(spec.constraint ? { grammar: spec.constraint.grammar } : {}),
  }));
  const constraint = spec.constraint ?? null;
  return { id, card: spec.card, policy, plan, promptTokens, promptTokenCount: promptTokens.length, requests, arrivedAt: spec.arrivedAt, shadow, constraint };
}

/**
 * Several prompts' generations as one (a completions `prompt` list): their
 * requests in order, so choice index = prompt_i * n + j as OpenAI numbers them,
 * and usage counts every prompt. The first prompt stands for the batch where one
 * is needed (errors' policy label, shadow fidelity); the others' shadow tickets are given up.
 */
export function mergePrepared(preps: readonly PreparedGeneration[]): PreparedGeneration {
  const first = preps[0];
  if (first === undefined) throw new Error('mergePrepared needs at least one generation');
  if (preps.length === 1) return first;
  for (const p of preps.slice(1)) p.shadow?.skip();
  return {
    ...first,
    promptTokenCount: preps.reduce((sum, p) => sum + p.promptTokenCount, 0),
    requests: preps.flatMap((p) => p.requests),
  };
}

/** Hands a finished request to shadow fidelity (call once the response is sent); anything else gives the ticket up. */
export function settleShadow(prep: PreparedGeneration, firstChoice: ChoiceDone | null | undefined): void {
  if (prep.shadow === null) return;
  const capture = firstChoice?.capture;
  if (capture !== null && capture !== undefined && firstChoice?.finishReason !== 'abort') prep.shadow.submit(capture.tokens, capture.rows);
  else prep.shadow.skip();
}

/** Runs `fn` once the response has been written out (or the connection closed), never before. */
export function afterResponse(raw: ServerResponse, fn: () => void): void {
  if (raw.writableFinished || raw.destroyed) {
    setImmediate(fn);
    return;
  }
  const once = (): void => {
    raw.off('finish', once);
    raw.off('close', once);
    fn();
  };
  raw.once('finish', once);
  raw.once('close', once);
}

export interface Lifecycle {
  readonly signal: AbortSignal;
  abort(kind: GenerationAbort['kind']): void;
  finish(): void;
}

/**
 * Ties a generation to its transport: the transport closing early aborts it
 * (freeing its KV memory), shutdown can abort it, and the optional deadline
 * does too. `finish` must run when the response is over.
 */
export function startLifecycle(ctx: ServerContext, onTransportClose: (listener: () => void) => () => void): Lifecycle {
  const controller = new AbortController();
  const untrack = ctx.inflight.track(controller);
  const abort = (kind: GenerationAbort['kind']): void => {
    if (!controller.signal.aborted) controller.abort(new GenerationAbort(kind));
  };
  const unlisten = onTransportClose(() => abort('client_closed'));
  const timeoutMs = ctx.config.server.requestTimeoutMs;
  const timer = timeoutMs === undefined ? null : setTimeout(() => abort('timeout'), timeoutMs);
  return {
    signal: controller.signal,
    abort,
    finish(): void {
      if (timer !== null) clearTimeout(timer);
      unlisten();
      untrack();
    },
  };
}

/** An HTTP response's "client went away": the response closed before it finished. */
export function httpClose(raw: ServerResponse): (listener: () => void) => () => void {
  return (listener) => {
    const onClose = (): void => {
      if (!raw.writableFinished) listener();
    };
    raw.on('close', onClose);
    return () => raw.off('close', onClose);
  };
}

/** What the client is told about an aborted generation; null: nobody to tell, or nothing went wrong. */
export function abortError(signal: AbortSignal): ApiError | null {
  switch (abortKind(signal)) {
    case 'timeout':
      return new ApiError('request_timeout', 'The request took longer than the server allows (server.requestTimeoutMs).');
    case 'shutdown':
      return new ApiError('shutting_down', 'The server is shutting down.', { retryAfterSeconds: 5 });
    default:
      return null;
  }
}

export interface CollectedChoice {
  text: string;
  readonly tokens: { readonly event: TokenOut; readonly offset: number }[];
  done: ChoiceDone | null;
}

export interface UsageBody {
  readonly prompt_tokens: number;
  readonly completion_tokens: number;
  readonly total_tokens: number;
  readonly prompt_tokens_details: { readonly cached_tokens: number };
}

/**
 * The `usage` object. `cached_tokens` (as OpenAI and vLLM report it) counts the prompt
 * tokens whose KV came from the prefix cache; the choices share one prompt, so the first
 * finished choice's count stands for the request.
 */
export function totalUsage(prep: PreparedGeneration, completionTokens: number, cachedTokens: number): UsageBody {
  const prompt = prep.promptTokenCount;
  return {
    prompt_tokens: prompt,
    completion_tokens: completionTokens,
    total_tokens: prompt + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

/** Prompt tokens served from the prefix cache, from the first choice that reported (0 without a hit). */
export function cachedPromptTokens(dones: readonly (ChoiceDone | null | undefined)[]): number {
  const use = dones.find((d) => d?.report != null)?.report?.prefixCache;
  return use?.status === 'hit' ? use.cachedTokens : 0;
}

/**
 * Runs all choices to the end and returns them, or null when the client went
 * away (nothing to answer). Throws the API error to answer with otherwise.
 */
export async function collectChoices(ctx: ServerContext, prep: PreparedGeneration, lifecycle: Lifecycle): Promise<CollectedChoice[] | null> {
  const choices: CollectedChoice[] = prep.requests.map(() => ({ text: '', tokens: [], done: null }));
  for await (const { index, event } of runChoices(ctx.engine, prep.requests, lifecycle.signal, ctx.metrics, prep.arrivedAt)) {
    const choice = choices[index] as CollectedChoice;
    if (event.type === 'token') {
      choice.tokens.push({ event, offset: choice.text.length });
      choice.text += event.text;
    } else {
      choice.text += event.text;
      choice.done = event;
    }
  }
  if (lifecycle.signal.aborted) {
    const err = abortError(lifecycle.signal);
    if (err === null) return null;
    throw err;
  }
  return choices;
}

/** Shapes each streamed event into the endpoint's chunk; null skips the event. */
export interface StreamFormat {
  start(index: number): unknown;
  token(index: number, event: TokenOut, offset: number): unknown;
  /** Text released at the end (a held-back partial stop match that never completed). */
  trailingText(index: number, text: string, offset: number): unknown;
  /** The chunk carrying finish_reason (and the choice's `cap`). */
  finish(index: number, done: ChoiceDone): unknown;
  /** The usage chunk; `cachedTokens` as cachedPromptTokens counts them. */
  usage(usage: Usage, cachedTokens: number): unknown;
}

/**
 * Streams all choices as SSE. The engine's first event is awaited before any
 * byte is sent, so rejections (queue full, context too long) still get their
 * HTTP status; errors after that travel as `data: {"error": ...}` then [DONE].
 */
export async function streamChoices(
  ctx: ServerContext,
  prep: PreparedGeneration,
  lifecycle: Lifecycle,
  sse: SseStream,
  headers: Readonly<Record<string, string>>,
  format: StreamFormat,
  includeUsage: boolean,
): Promise<void> {
  const iterator = runChoices(ctx.engine, prep.requests, lifecycle.signal, ctx.metrics, prep.arrivedAt);
  let first: IteratorResult<ChoiceEvent>;
  try {
    first = await iterator.next();
  } catch (err) {
    await iterator.return(undefined);
    throw err;
  }
  if (lifecycle.signal.aborted) {
    await iterator.return(undefined);
    const err = abortError(lifecycle.signal);
    if (err !== null) throw err;
    return;
  }
  sse.open(headers);
  const n = prep.requests.length;
  const dones: (ChoiceDone | null)[] = new Array<ChoiceDone | null>(n).fill(null);
  const offsets = new Array<number>(n).fill(0);
  let completionTokens = 0;
  try {
    for (let i = 0; i < n; i++) {
      const chunk = format.start(i);
      if (chunk !== null) await sse.send(chunk);
    }
    let step = first;
    while (step.done !== true) {
      const { index, event } = step.value;
      if (event.type === 'token') {
        const chunk = format.token(index, event, offsets[index] ?? 0);
        offsets[index] = (offsets[index] ?? 0) + event.text.length;
        if (chunk !== null) await sse.send(chunk);
      } else {
        if (event.text !== '') {
          await sse.send(format.trailingText(index, event.text, offsets[index] ?? 0));
          offsets[index] = (offsets[index] ?? 0) + event.text.length;
        }
        dones[index] = event;
        completionTokens += event.usage.completionTokens;
        // The signal can abort during any await above; TypeScript's narrowing cannot see that.
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
        if (!lifecycle.signal.aborted) await sse.send(format.finish(index, event));
      }
      step = await iterator.next();
    }
    const err = abortError(lifecycle.signal);
    if (err !== null) {
      recordError(ctx, err, prep.policy.name);
      await sse.send(err.toBody());
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- aborts during the awaits above
    } else if (!lifecycle.signal.aborted && includeUsage) {
      await sse.send(format.usage({ promptTokens: prep.promptTokenCount, completionTokens }, cachedPromptTokens(dones)));
    }
  } catch (thrown) {
    const err = toApiError(thrown);
    if (err.statusCode >= 500) ctx.log.error({ err: thrown, requestId: prep.id }, 'generation failed mid-stream');
    recordError(ctx, err, prep.policy.name);
    await sse.send(err.toBody());
  } finally {
    await iterator.return(undefined);
    sse.end();
    settleShadow(prep, dones[0]);
  }
}
