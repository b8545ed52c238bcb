import type { IncomingHttpHeaders } from 'node:http';
import { POLICY_HEADER, type RequestCap } from '../cap/router.js';
import type { Policy } from '../policies/registry.js';
import type { PolicyReport } from '../policies/types.js';
import type { ServerContext } from './context.js';

export { POLICY_HEADER };

/** The Bearer key a request carried (auth has already checked it when keys are configured). */
export function bearerKey(headers: IncomingHttpHeaders): string | null {
  const match = headers.authorization === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization);
  return match?.[1] ?? null;
}

/** The serving policy for a request (cap/router's precedence); throws RoutingError for a policy it may not name. */
export function routeRequest(ctx: ServerContext, headers: IncomingHttpHeaders, cap: RequestCap | null | undefined, promptTokens: number): Policy {
  return ctx.router.route({ promptTokens, headers, apiKey: bearerKey(headers), cap }).policy;
}

/** The `cap` object of responses: which policy served and what it did (snake_case, like the rest of the API). */
export interface CapObject {
  readonly policy: string;
  readonly kind: string;
  readonly prompt_tokens: number;
  readonly kv_tokens_retained: number | null;
  readonly context_tokens: number | null;
  readonly compression_ratio: number | null;
  readonly attention_mass_retained: number | null;
}

function mean(values: readonly number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * One choice's report, or for n > 1 the mean over the choices that reported.
 * Choices cut off before the engine reported (aborted) leave the numbers
 * null, and prompt_tokens falls back to the request's.
 */
export function capObject(policy: Policy, promptTokens: number, reports: readonly (PolicyReport | null)[]): CapObject {
  const got = reports.filter((r): r is PolicyReport => r !== null);
  const masses = got.map((r) => r.attentionMassRetained).filter((m): m is number => m !== null);
  return {
    policy: policy.name,
    kind: policy.kind,
    prompt_tokens: got[0]?.promptTokens ?? promptTokens,
    kv_tokens_retained: mean(got.map((r) => r.kvTokensRetained)),
    context_tokens: mean(got.map((r) => r.contextTokens)),
    compression_ratio: mean(got.map((r) => r.compressionRatio)),
    attention_mass_retained: mean(masses),
  };
}
