/**
 * From a tokenized request to what the engine gets: the routed serving policy,
 * the overflow mode applied when prompt + max_tokens exceed the window,
 * max_tokens decided, and the role-tagged segments a compression policy needs.
 * Runs on the HTTP thread, synchronously and cheaply: compression itself runs
 * in the engine's worker (the scorer is a model), so mode `compress` only
 * routes the request to the named compression policy with the token target
 * that fits, and the engine's report says what it reached.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { overflowPolicyProblem, resolveOverflow, type OverflowSource } from '../cap/overflow-settings.js';
import { DEFAULT_SAMPLING, type ModelCard } from '../engine/types.js';
import type { PromptSegment } from '../policies/compression/types.js';
import { ContextLengthExceededError } from '../policies/overflow/errors.js';
import {
  evictDecision,
  shiftPrompt,
  truncatePrompt,
  type OverflowInput,
  type OverflowReport,
  type OverflowResult,
  type OverflowSpec,
} from '../policies/overflow/index.js';
import { requestNeeds } from '../policies/methods.js';
import type { Policy } from '../policies/registry.js';
import { weightsCap, type WeightsCap } from './policy.js';
import type { ServerContext } from './context.js';
import { ApiError } from './errors.js';
import { bearerKey } from './policy.js';
import { contextLimit, type PromptInput } from './prompt.js';
import { concatSegments } from './prompt-segments.js';
import type { RequestCapBody } from './request-schemas.js';

/**
 * Completion tokens assumed when max_tokens is absent and the prompt alone
 * fills the window: an overflow mode makes room for this many (the engine's
 * default generation length), and the request may then use whatever room the
 * mode left.
 */
export const OVERFLOW_COMPLETION_RESERVE = DEFAULT_SAMPLING.maxTokens;

export interface PlanInput {
  readonly headers: IncomingHttpHeaders;
  readonly cap: RequestCapBody | null | undefined;
  readonly prompt: PromptInput;
  readonly card: ModelCard;
  /** max_tokens as requested; null or undefined: absent. */
  readonly requestedMaxTokens: number | null | undefined;
  /** The parameter that carried it (named by errors). */
  readonly maxParam: string;
}

export interface DroppedText {
  readonly text: string;
  readonly tokens: readonly number[];
}

export interface GenerationPlan {
  /** The serving policy: the routed one, or the one an overflow mode named (compress, evict). */
  readonly policy: Policy;
  readonly promptTokens: readonly number[];
  /** The prompt's segments, sent when the policy compresses; null otherwise. */
  readonly segments: readonly PromptSegment[] | null;
  /** Whole-prompt token target overriding the compression policy's rate (mode compress); null: the policy's own. */
  readonly compressionRate: number | null;
  readonly maxTokens: number;
  readonly contextWindow: number;
  /** What overflow handling did (mode compress: tokens_after comes from the engine's compression report). */
  readonly overflow: OverflowReport;
  readonly overflowCompresses: boolean;
  /** The request asked for what was dropped (`cap.return_dropped`). */
  readonly returnDropped: boolean;
  /** What truncate or shift dropped, when asked for. */
  readonly overflowDropped: readonly DroppedText[];
  /** The elastic-weights plan the engine runs (every request's weights); null: the model's own weights. */
  readonly weights: WeightsCap | null;
}

function notApplied(spec: OverflowSpec, promptTokens: number, maxTokens: number, contextWindow: number): OverflowReport {
  return { mode: spec.mode, applied: false, tokensBefore: promptTokens, tokensAfter: promptTokens, dropped: 0, contextWindow, maxTokens, detail: {} };
}

/** The one contiguous run two token lists differ by (truncate and shift each drop one range). */
function droppedRange(before: readonly number[], after: readonly number[]): number[] {
  let head = 0;
  while (head < after.length && before[head] === after[head]) head++;
  let tail = 0;
  while (tail < after.length - head && before[before.length - 1 - tail] === after[after.length - 1 - tail]) tail++;
  return before.slice(head, before.length - tail);
}

export async function planGeneration(ctx: ServerContext, input: PlanInput): Promise<GenerationPlan> {
  const { prompt } = input;
  const window = contextLimit(input.card, ctx.config);
  const decision = ctx.router.route({ promptTokens: prompt.tokens.length, headers: input.headers, apiKey: bearerKey(input.headers), cap: input.cap });
  const { spec, source } = resolveOverflow(input.cap?.overflow, decision.overflow, ctx.config.model.overflow);
  // A request's own overflow policy is checked whether or not this prompt overflows: a bad one is a 400 every time.
  if (source === 'request' && (spec.mode === 'compress' || spec.mode === 'evict')) overflowPolicy(ctx, spec, source);
  const requested = input.requestedMaxTokens ?? null;
  const returnDropped = input.cap?.return_dropped === true;
  const fitsAsIs = (n: number): boolean => (requested === null ? n < window : n + requested <= window);

  // Segments cost a tokenization pass: only a method that asks for them and the overflow modes that cut along them need them.
  const wantsSegments = requestNeeds(decision.policy).segments;
  const segments = wantsSegments || (spec.mode !== 'error' && !fitsAsIs(prompt.tokens.length)) ? await prompt.segments() : null;
  const tokens = segments === null ? prompt.tokens : concatSegments(segments);
  const total = tokens.length;

  // max_tokens the way vLLM decides it: absent means the room the prompt leaves, so a prompt
  // that leaves any room never overflows. A prompt that fills the window gets
  // OVERFLOW_COMPLETION_RESERVE to make room for; after truncate or shift the request may use
  // whatever room the mode left (shift frees more than the excess).
  const assumed = requested ?? (total < window ? window - total : OVERFLOW_COMPLETION_RESERVE);
  const base = {
    policy: decision.policy,
    promptTokens: tokens,
    segments: wantsSegments ? segments : null,
    compressionRate: null,
    maxTokens: assumed,
    contextWindow: window,
    overflowCompresses: false,
    returnDropped,
    overflowDropped: [],
    weights: weightsCap(ctx.engine.health().weightPlan),
  } satisfies Omit<GenerationPlan, 'overflow'>;
  if (total + assumed <= window) return { ...base, overflow: notApplied(spec, total, assumed, window) };

  const overflowInput: OverflowInput = { segments: segments ?? [{ role: 'context', tokens }], maxTokens: assumed, contextWindow: window };
  const exceeded = (reason: string | null): ApiError => {
    const param = requested === null || total >= window ? prompt.param : input.maxParam;
    const said =
      requested === null
        ? `However, your request has ${total} input tokens, which leaves no room for a completion.`
        : `However, you requested ${total + requested} tokens (${total} in the input, ${requested} in the completion).`;
    const fix = requested === null ? 'Please reduce the length of the input.' : 'Please reduce the length of the input or of the completion.';
    return new ApiError(
      'context_length_exceeded',
      `This model's maximum context length is ${window} tokens. ${said} ${reason === null ? '' : `${reason} `}${fix}`,
      { param },
    );
  };
  const attempt = (run: () => OverflowResult): OverflowResult => {
    try {
      return run();
    } catch (err) {
      if (err instanceof ContextLengthExceededError) throw exceeded(err.reason);
      throw err;
    }
  };
  const count = (policy: Policy, report: OverflowReport): void => {
    ctx.metrics.overflowRequests.inc({ policy: policy.name, mode: report.mode });
    if (report.mode === 'truncate' || report.mode === 'shift')
      ctx.metrics.promptTokensDropped.inc({ policy: policy.name, reason: report.mode }, report.dropped);
  };

  switch (spec.mode) {
    case 'error':
      throw exceeded(null);
    case 'truncate':
    case 'shift': {
      const result = attempt(() => (spec.mode === 'truncate' ? truncatePrompt(overflowInput, spec.side) : shiftPrompt(overflowInput, spec.keep)));
      count(base.policy, result.report);
      const cut = droppedRange(tokens, result.tokens);
      const maxTokens = requested ?? window - result.tokens.length;
      return {
        ...base,
        promptTokens: result.tokens,
        segments: wantsSegments ? result.segments : null,
        maxTokens,
        overflow: { ...result.report, maxTokens },
        overflowDropped: returnDropped && cut.length > 0 ? [{ text: await ctx.engine.detokenize(cut), tokens: cut }] : [],
      };
    }
    case 'evict': {
      const policy = overflowPolicy(ctx, spec, source);
      const result = attempt(() => evictDecision(overflowInput, policy.name));
      count(policy, result.report);
      return { ...base, policy, segments: null, overflow: result.report };
    }
    case 'compress': {
      const policy = overflowPolicy(ctx, spec, source);
      const budget = window - assumed;
      if (budget < 2) throw exceeded('Overflow mode compress needs room for at least 2 prompt tokens.');
      // overflowPolicy checked the kind: the method shrinks prompts and says what it keeps and aims at.
      const shrink = requestNeeds(policy).shrink;
      if (shrink === null) throw new Error(`unreachable: overflow policy ${policy.name} does not shrink prompts`);
      let kept = 0;
      for (const s of overflowInput.segments) if (shrink.keeps(s.role)) kept += s.tokens.length;
      if (kept > budget) {
        throw exceeded(
          `Overflow mode compress (policy ${policy.name}) must keep ${kept} tokens (the template, system message and question), more than the ${budget} available to the prompt.`,
        );
      }
      // Routed to this very policy: its own rate applies when that already fits.
      const own = policy.name === decision.policy.name ? shrink.ownTarget(total, total - kept) : Infinity;
      const report: OverflowReport = {
        mode: 'compress',
        applied: true,
        tokensBefore: total,
        tokensAfter: total,
        dropped: 0,
        contextWindow: window,
        maxTokens: assumed,
        detail: { policy: policy.name, method: policy.method, targetTokens: Math.min(own, budget) },
      };
      ctx.metrics.overflowRequests.inc({ policy: policy.name, mode: 'compress' });
      return {
        ...base,
        policy,
        segments: overflowInput.segments,
        compressionRate: own <= budget ? null : budget,
        overflow: report,
        overflowCompresses: true,
      };
    }
  }
}

/** The policy a compress or evict mode names, checked: it exists and has the right kind; a request may only name what it could name as cap.policy. */
function overflowPolicy(ctx: ServerContext, spec: Extract<OverflowSpec, { policy: string }>, source: OverflowSource): Policy {
  const param = 'cap.overflow.policy';
  const problem = overflowPolicyProblem(spec, ctx.policies);
  if (problem !== null) {
    // The config's settings were checked at start; only a request can get here.
    throw new ApiError(ctx.policies.has(spec.policy) ? 'invalid_request' : 'unknown_policy', `Invalid 'cap.overflow': ${problem}.`, { param });
  }
  if (source === 'request') return ctx.router.requested(spec.policy, param);
  return ctx.policies.get(spec.policy) as Policy;
}
