/**
 * The policies a server runs with: every file in `policies.dir`, then the
 * config's per-policy param overrides (`policies.NAME.params.KEY`, usually
 * from `--set`) merged in and validated again against the method's schema,
 * so an override is held to the same rules as the file.
 */
import path from 'node:path';
import { ConfigError } from '../config/config-overrides.js';
import type { Config } from '../config/schema.js';
import { PolicyError } from '../policies/errors.js';
import { loadPolicies, parsePolicyFile, type Policy } from '../policies/registry.js';

/** `policies.NAME` entries of the config (everything in the section except `dir`). */
function paramOverrides(section: Config['policies']): [string, Readonly<Record<string, unknown>>][] {
  const out: [string, Readonly<Record<string, unknown>>][] = [];
  for (const [name, value] of Object.entries(section as Readonly<Record<string, unknown>>)) {
    if (name === 'dir') continue;
    const params = value !== null && typeof value === 'object' ? (value as { params?: unknown }).params : undefined;
    out.push([name, params !== null && typeof params === 'object' ? (params as Record<string, unknown>) : {}]);
  }
  return out;
}

/** Loads and validates the configured policies; every problem is reported at once, naming the file or config path. */
export function loadServingPolicies(config: Config, cwd: string = process.cwd()): ReadonlyMap<string, Policy> {
  const dir = path.resolve(cwd, config.policies.dir);
  const loaded = loadPolicies(dir);
  const overrides = paramOverrides(config.policies);
  if (overrides.length === 0) return loaded;
  const out = new Map(loaded);
  const errors: string[] = [];
  for (const [name, params] of overrides) {
    const policy = loaded.get(name);
    if (policy === undefined) {
      errors.push(`$.policies.${name}: no policy named ${JSON.stringify(name)} is loaded from ${dir} (loaded: ${[...loaded.keys()].join(', ')})`);
      continue;
    }
    const merged = { name: policy.name, kind: policy.kind, method: policy.method, params: { ...policy.params, ...params } };
    try {
      // JSON is YAML: the policy file parser validates the merged params exactly as it would a file.
      out.set(name, parsePolicyFile(JSON.stringify(merged), `${policy.source} with $.policies.${name}.params overrides`));
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err;
      errors.push(err.message);
    }
  }
  if (errors.length > 0) throw new ConfigError(`invalid policy overrides:\n  ${errors.join('\n').split('\n').join('\n  ')}`);
  return out;
}
