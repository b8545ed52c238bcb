/**
 * Which overflow behaviour applies to a request (prompt + max_tokens beyond the
 * model's window), and the start-up check of the configured ones. Precedence:
 * the request's `cap.overflow`, else the deciding routing rule's `overflow`,
 * else `model.overflow` (default `error`, vLLM's and OpenAI's behaviour).
 */
import type { Config } from '../config/schema.js';
import { normalizeOverflow, type OverflowSetting } from '../policies/overflow/schema.js';
import type { OverflowSpec } from '../policies/overflow/types.js';
import type { Policy } from '../policies/registry.js';
import type { PolicyKind } from '../policies/types.js';

export type OverflowSource = 'request' | 'rule' | 'model';

export interface ResolvedOverflow {
  readonly spec: OverflowSpec;
  readonly source: OverflowSource;
}

export function resolveOverflow(
  request: OverflowSetting | null | undefined,
  rule: OverflowSetting | null | undefined,
  model: OverflowSetting | null | undefined,
): ResolvedOverflow {
  if (request !== null && request !== undefined) return { spec: normalizeOverflow(request), source: 'request' };
  if (rule !== null && rule !== undefined) return { spec: normalizeOverflow(rule), source: 'rule' };
  return { spec: normalizeOverflow(model ?? 'error'), source: 'model' };
}

/** The kind of policy a mode names: compress brings a compression policy, evict an eviction one. */
export function overflowPolicyKind(spec: OverflowSpec): PolicyKind | null {
  switch (spec.mode) {
    case 'compress':
      return 'context-compression';
    case 'evict':
      return 'kv-eviction';
    default:
      return null;
  }
}

/** Why `spec` cannot name `policy` (absent, or of the wrong kind); null when it can. */
export function overflowPolicyProblem(spec: OverflowSpec, policies: ReadonlyMap<string, Policy>): string | null {
  const kind = overflowPolicyKind(spec);
  if (kind === null || (spec.mode !== 'compress' && spec.mode !== 'evict')) return null;
  const policy = policies.get(spec.policy);
  if (policy === undefined)
    return `overflow mode ${spec.mode} names an unknown policy ${JSON.stringify(spec.policy)} (loaded: ${[...policies.keys()].join(', ')})`;
  if (policy.kind !== kind) return `overflow mode ${spec.mode} needs a ${kind} policy, but ${JSON.stringify(spec.policy)} is ${policy.kind}`;
  return null;
}

/** Every problem with model.overflow and the rules' overflow settings, as `$.path: message` lines. */
export function checkOverflowConfig(config: Config, policies: ReadonlyMap<string, Policy>): string[] {
  const errors: string[] = [];
  const check = (path: string, setting: OverflowSetting | undefined): void => {
    if (setting === undefined) return;
    const problem = overflowPolicyProblem(normalizeOverflow(setting), policies);
    if (problem !== null) errors.push(`${path}: ${problem}`);
  };
  check('$.model.overflow', config.model.overflow);
  config.routing.rules.forEach((rule, i) => check(`$.routing.rules[${i}].overflow`, rule.overflow));
  return errors;
}
