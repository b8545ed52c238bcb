import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject } from 'ajv';
import YAML from 'yaml';
import { ConfigSchema, type Config } from './schema.js';
import { applyOverrides, ConfigError, type ConfigOverride } from './config-overrides.js';
import { deepFreeze } from './deep-freeze.js';

export { ConfigError, parseOverride, type ConfigOverride } from './config-overrides.js';

// Strict on purpose: no removeAdditional, no coerceTypes. A config file that
// says `port: "8080"` or `maxConcurent: 4` is a mistake the operator must see.
// verbose: errors carry their schema, so a union's `x-expects` text can replace one line per branch.
const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, verbose: true });
ajv.addKeyword({ keyword: 'x-expects', schemaType: 'string' });
const validate = ajv.compile(ConfigSchema);

export interface LoadConfigOptions {
  /** YAML file; absent: defaults only. */
  readonly file?: string;
  /** Applied in order on top of the file, before validation. */
  readonly overrides?: readonly ConfigOverride[];
}

function jsonPath(instancePath: string, extra?: string): string {
  const segments = instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) segments.push(extra);
  return '$' + segments.map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`)).join('');
}

function describe(error: ErrorObject): string {
  if (error.keyword === 'additionalProperties') {
    const key = String((error.params as { additionalProperty: unknown }).additionalProperty);
    return `${jsonPath(error.instancePath, key)}: unknown key '${key}'`;
  }
  if (error.keyword === 'required') {
    const key = String((error.params as { missingProperty: unknown }).missingProperty);
    return `${jsonPath(error.instancePath, key)}: required`;
  }
  if (error.keyword === 'enum' || error.keyword === 'const') {
    const allowed =
      error.keyword === 'const' ? [(error.params as { allowedValue: unknown }).allowedValue] : (error.params as { allowedValues: unknown[] }).allowedValues;
    return `${jsonPath(error.instancePath)}: must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return `${jsonPath(error.instancePath)}: ${error.message ?? 'invalid'}`;
}

/** A union's own one-line description of what it accepts (the `x-expects` keyword), when the error is that union's. */
function expectsOf(error: ErrorObject): string | null {
  if (error.keyword !== 'anyOf') return null;
  const parent: unknown = error.parentSchema;
  const text = parent !== null && typeof parent === 'object' ? (parent as Record<string, unknown>)['x-expects'] : undefined;
  return typeof text === 'string' ? text : null;
}

/**
 * anyOf failures repeat once per branch ("must be string", "must be null",
 * "must match a schema in anyOf"); keep one line per path so the message reads.
 */
function summarize(all: readonly ErrorObject[]): string[] {
  // A union that describes itself stands for every complaint of its branches, deeper paths included.
  const described = all.filter((e) => expectsOf(e) !== null).map((e) => `${e.schemaPath}/`);
  const errors = all.filter((e) => !described.some((prefix) => e.schemaPath.startsWith(prefix)));
  const byPath = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    const key = e.keyword === 'additionalProperties' || e.keyword === 'required' ? describe(e) : e.instancePath;
    const list = byPath.get(key) ?? [];
    list.push(e);
    byPath.set(key, list);
  }
  const lines: string[] = [];
  for (const list of byPath.values()) {
    const anyOf = list.find((e) => e.keyword === 'anyOf');
    const expects = list.map(expectsOf).find((x) => x !== null);
    if (anyOf !== undefined && expects !== undefined) {
      lines.push(`${jsonPath(anyOf.instancePath)}: must be ${expects}`);
    } else if (anyOf !== undefined) {
      const branches = list.filter((e) => e !== anyOf);
      const consts = branches.filter((e) => e.keyword === 'const').map((e) => JSON.stringify((e.params as { allowedValue: unknown }).allowedValue));
      const types = branches.filter((e) => e.keyword === 'type').map((e) => String((e.params as { type: unknown }).type));
      const others = branches.filter((e) => e.keyword !== 'const' && e.keyword !== 'type').map((e) => describe(e).replace(/^[^:]*: must (be )?/, ''));
      const alternatives = [...(consts.length > 0 ? [`one of ${consts.join(', ')}`] : []), ...(types.length > 0 ? [`a ${types.join(' or ')}`] : []), ...others];
      lines.push(`${jsonPath(anyOf.instancePath)}: must be ${[...new Set(alternatives)].join(', or ')}`);
    } else {
      for (const e of list) lines.push(describe(e));
    }
  }
  return [...new Set(lines)];
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read config file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = YAML.parse(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(`${file}: invalid YAML: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`${file}: $: the config must be a mapping, got ${Array.isArray(parsed) ? 'a sequence' : typeof parsed}`);
  }
  return parsed as Record<string, unknown>;
}

/** Reads, overrides, validates strictly, fills defaults and deep-freezes the config. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const raw = options.file === undefined ? {} : readYaml(options.file);
  const overrides = options.overrides ?? [];
  applyOverrides(raw, overrides);
  if (!validate(raw)) {
    const source = options.file ?? '<built-in defaults>';
    const suffix = overrides.length > 0 ? ' (after --set overrides)' : '';
    const lines = summarize(validate.errors ?? []);
    throw new ConfigError(`${source}${suffix}: invalid config:\n  ${lines.join('\n  ')}`);
  }
  return deepFreeze(raw as unknown as Config);
}
