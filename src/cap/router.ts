/**
 * cap/router: config + request -> Policy. Precedence, first that applies:
 *   1. the request names a policy (body `cap.policy`, else header
 *      `x-capserve-policy`): served when `routing.allowRequestOverride`
 *      allows it, else a 400 naming the parameter and what is allowed;
 *   2. the first rule (in config order) whose every condition matches;
 *   3. the request states `cap.favor`: the first allowed policy (the default
 *      first, then allowRequestOverride's order) whose CAP profile favours
 *      every requested axis;
 *   4. routing.defaultPolicy.
 * Checked once at start: every name the routing section uses must be loaded
 * and able to serve the model (an expert-offload policy cannot serve a dense
 * model); `cap.favor` only picks policies that can.
 */
import { ConfigError } from '../config/config-overrides.js';
import type { Config } from '../config/schema.js';
import type { OverflowSetting } from '../policies/overflow/schema.js';
import type { Policy } from '../policies/registry.js';
import type { Axis } from '../policies/types.js';

export const POLICY_HEADER = 'x-capserve-policy';

/** The request's `cap` object as the API layer validated it. */
export interface RequestCap {
  readonly policy?: string | null;
  readonly favor?: readonly Axis[] | null;
}

export interface RouteInput {
  readonly promptTokens: number;
  /** Node's lower-cased request headers. */
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The Bearer key the request carried, if any. */
  readonly apiKey: string | null;
  readonly cap: RequestCap | null | undefined;
}

export type RouteReason = 'request' | 'rule' | 'favor' | 'default';

export interface RouteDecision {
  readonly policy: Policy;
  readonly by: RouteReason;
  /** The matching rule's name (or `rules[i]`) when a rule decided. */
  readonly rule: string | null;
  /** The deciding rule's `overflow` setting, when it has one (it overrides model.overflow). */
  readonly overflow: OverflowSetting | null;
}

/** A request asked for a policy it may not have; the API answers 400 with `param`. */
export class RoutingError extends Error {
  constructor(
    readonly code: 'unknown_policy' | 'policy_not_allowed' | 'invalid_request',
    message: string,
    readonly param: string,
  ) {
    super(message);
    this.name = 'RoutingError';
  }
}

export interface Router {
  readonly defaultPolicy: Policy;
  /** Policies a request may name, in preference order. */
  readonly allowed: readonly Policy[];
  route(input: RouteInput): RouteDecision;
  /** A policy the request names elsewhere (e.g. `cap.overflow.policy`), under the same rules as `cap.policy`; throws RoutingError naming `param`. */
  requested(name: string, param: string): Policy;
}

type Rule = Config['routing']['rules'][number];

function first(value: string | readonly string[] | undefined): string | undefined {
  const v = typeof value === 'string' ? value : value?.[0];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function ruleMatches(rule: Rule, input: RouteInput): boolean {
  const m = rule.match;
  if (m.minPromptTokens !== undefined && input.promptTokens < m.minPromptTokens) return false;
  if (m.maxPromptTokens !== undefined && input.promptTokens > m.maxPromptTokens) return false;
  if (m.apiKey !== undefined && input.apiKey !== m.apiKey) return false;
  if (m.header !== undefined) {
    const got = input.headers[m.header.name.toLowerCase()];
    const values = got === undefined ? [] : typeof got === 'string' ? [got] : got;
    if (!values.includes(m.header.value)) return false;
  }
  if (m.favor !== undefined) {
    const favor = input.cap?.favor ?? [];
    if (favor.length === 0 || !favor.every((axis) => m.favor?.includes(axis))) return false;
  }
  return true;
}

export interface RouterOptions {
  /** Why a policy cannot serve the loaded model (null: it can); such policies are never routed to. */
  readonly unservable?: (policy: Policy) => string | null;
}

/** Every problem with the routing section against the loaded policies, as `$.path: message` lines. */
export function checkRouting(routing: Config['routing'], policies: ReadonlyMap<string, Policy>, options: RouterOptions = {}): string[] {
  const loaded = `(loaded: ${[...policies.keys()].join(', ')})`;
  const unknown = (where: string, name: string, what = 'unknown policy'): string => `${where}: ${what} ${JSON.stringify(name)} ${loaded}`;
  const errors: string[] = [];
  const servable = (where: string, name: string): void => {
    const policy = policies.get(name);
    const reason = policy === undefined ? null : (options.unservable?.(policy) ?? null);
    if (reason !== null) errors.push(`${where}: policy ${JSON.stringify(name)} cannot serve this model: ${reason}`);
  };
  if (!policies.has(routing.defaultPolicy)) errors.push(unknown('$.routing.defaultPolicy', routing.defaultPolicy));
  servable('$.routing.defaultPolicy', routing.defaultPolicy);
  if (typeof routing.allowRequestOverride !== 'boolean') {
    routing.allowRequestOverride.forEach((name, i) => {
      if (!policies.has(name)) errors.push(unknown(`$.routing.allowRequestOverride[${i}]`, name));
    });
  }
  routing.rules.forEach((rule, i) => {
    const label = rule.name !== undefined ? ` (rule ${JSON.stringify(rule.name)})` : '';
    if (!policies.has(rule.policy)) errors.push(unknown(`$.routing.rules[${i}].policy`, rule.policy, `rule ${i}${label} names an unknown policy`));
    servable(`$.routing.rules[${i}].policy`, rule.policy);
    const { minPromptTokens: min, maxPromptTokens: max } = rule.match;
    if (min !== undefined && max !== undefined && min > max) {
      errors.push(`$.routing.rules[${i}].match: minPromptTokens (${min}) > maxPromptTokens (${max}): rule ${i}${label} can never match`);
    }
  });
  return errors;
}

/** Builds the router; throws ConfigError listing every routing problem. */
export function createRouter(routing: Config['routing'], policies: ReadonlyMap<string, Policy>, options: RouterOptions = {}): Router {
  const errors = checkRouting(routing, policies, options);
  if (errors.length > 0) throw new ConfigError(`invalid routing:\n  ${errors.join('\n  ')}`);
  const get = (name: string): Policy => policies.get(name) as Policy;
  const defaultPolicy = get(routing.defaultPolicy);
  const override = routing.allowRequestOverride;
  const allowed: readonly Policy[] = override === true ? [...policies.values()] : override === false ? [] : override.map(get);
  const allowedNames = new Set(allowed.map((p) => p.name));
  // The default wins ties among policies that serve a stated preference.
  const byPreference = allowedNames.has(defaultPolicy.name) ? [defaultPolicy, ...allowed.filter((p) => p !== defaultPolicy)] : allowed;

  const reasonFor = (policy: Policy): string | null => options.unservable?.(policy) ?? null;
  const explicit = (name: string, param: string): Policy => {
    if (allowedNames.has(name)) {
      const policy = get(name);
      const reason = reasonFor(policy);
      if (reason !== null) throw new RoutingError('invalid_request', `The serving policy '${name}' cannot serve this model: ${reason}.`, param);
      return policy;
    }
    if (allowed.length === 0) {
      throw new RoutingError(
        'policy_not_allowed',
        `This server does not let requests choose a serving policy (routing.allowRequestOverride is false); remove '${param}'.`,
        param,
      );
    }
    const list = allowed.map((p) => p.name).join(', ');
    if (!policies.has(name)) throw new RoutingError('unknown_policy', `Unknown serving policy '${name}'. Allowed: ${list}.`, param);
    throw new RoutingError('policy_not_allowed', `The serving policy '${name}' may not be requested on this server. Allowed: ${list}.`, param);
  };

  return {
    defaultPolicy,
    allowed,
    requested: explicit,
    route(input: RouteInput): RouteDecision {
      const bodyPolicy = input.cap?.policy;
      if (bodyPolicy !== undefined && bodyPolicy !== null) return { policy: explicit(bodyPolicy, 'cap.policy'), by: 'request', rule: null, overflow: null };
      const headerPolicy = first(input.headers[POLICY_HEADER]);
      if (headerPolicy !== undefined) return { policy: explicit(headerPolicy, POLICY_HEADER), by: 'request', rule: null, overflow: null };
      for (let i = 0; i < routing.rules.length; i++) {
        const rule = routing.rules[i] as Rule;
        if (ruleMatches(rule, input)) return { policy: get(rule.policy), by: 'rule', rule: rule.name ?? `rules[${i}]`, overflow: rule.overflow ?? null };
      }
      const favor = input.cap?.favor ?? [];
      if (favor.length > 0) {
        const pick = byPreference.find((p) => favor.every((axis) => p.cap.favors.includes(axis)) && reasonFor(p) === null);
        if (pick !== undefined) return { policy: pick, by: 'favor', rule: null, overflow: null };
      }
      return { policy: defaultPolicy, by: 'default', rule: null, overflow: null };
    },
  };
}
