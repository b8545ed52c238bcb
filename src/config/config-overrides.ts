import YAML from 'yaml';

/** One `--set a.b.c=value` override; the value is already parsed as YAML. */
export interface ConfigOverride {
  readonly path: readonly string[];
  readonly value: unknown;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parses `a.b.c=value`; the value is read as a YAML scalar (or flow sequence), so `16` is a number and `true` a boolean. */
export function parseOverride(arg: string): ConfigOverride {
  const eq = arg.indexOf('=');
  if (eq <= 0) {
    throw new ConfigError(`--set expects PATH=VALUE (e.g. server.port=8080), got '${arg}'`);
  }
  const rawPath = arg.slice(0, eq);
  const rawValue = arg.slice(eq + 1);
  const path = rawPath.split('.');
  if (path.some((segment) => segment.length === 0)) {
    throw new ConfigError(`--set ${rawPath}: empty segment in the dot path`);
  }
  let value: unknown;
  try {
    value = rawValue === '' ? '' : YAML.parse(rawValue);
  } catch (err) {
    throw new ConfigError(`--set ${rawPath}: cannot parse value '${rawValue}' as YAML: ${(err as Error).message}`);
  }
  return { path, value };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Writes each override into `target`, creating intermediate objects; refuses to descend into a non-object. */
export function applyOverrides(target: Record<string, unknown>, overrides: readonly ConfigOverride[]): void {
  for (const { path, value } of overrides) {
    let node: Record<string, unknown> = target;
    for (let i = 0; i < path.length - 1; i++) {
      const key = path[i] as string;
      const next = node[key];
      if (next === undefined) {
        const created: Record<string, unknown> = {};
        node[key] = created;
        node = created;
      } else if (isPlainObject(next)) {
        node = next;
      } else {
        throw new ConfigError(`--set ${path.join('.')}: '${path.slice(0, i + 1).join('.')}' is not an object`);
      }
    }
    node[path[path.length - 1] as string] = value;
  }
}
