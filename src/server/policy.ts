import type { Config } from '../config/schema.js';
import { ApiError } from './errors.js';

export const POLICY_HEADER = 'x-capserve-policy';

/**
 * The serving policy for a request: the body's `cap.policy`, else the
 * `x-capserve-policy` header, else the configured default. Only policies the
 * config declares can be named.
 */
export function resolvePolicy(config: Config, bodyPolicy: string | null | undefined, header: string | string[] | undefined): string {
  const known = [config.routing.defaultPolicy];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  const requested = bodyPolicy ?? fromHeader;
  if (requested === undefined || requested === null) return config.routing.defaultPolicy;
  if (!known.includes(requested as typeof config.routing.defaultPolicy)) {
    throw new ApiError('unknown_policy', `Unknown serving policy '${requested}'. Available: ${known.join(', ')}.`, {
      param: bodyPolicy !== undefined && bodyPolicy !== null ? 'cap.policy' : POLICY_HEADER,
    });
  }
  return requested;
}
