/**
 * Turns ajv errors into one line per problem: `<file>: <JSON pointer>: <what>`.
 * Union branches collapse into one line (the union's `x-expects` text, or the
 * allowed constants), unknown keys name the key and the known ones.
 */
import type { ErrorObject } from 'ajv';

export function pointer(instancePath: string): string {
  return instancePath === '' ? '(root)' : instancePath;
}

function got(data: unknown): string {
  if (data === undefined) return '';
  // undefined for a function or a symbol, whatever the declared return type says
  const text = JSON.stringify(data) as string | undefined;
  return `, got ${text === undefined ? typeof data : text.length > 60 ? `${text.slice(0, 57)}...` : text}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function knownKeys(parentSchema: unknown): string {
  if (!isRecord(parentSchema) || !isRecord(parentSchema.properties)) return '';
  const keys = Object.keys(parentSchema.properties);
  return keys.length === 0 ? ' (no keys allowed)' : ` (known: ${keys.join(', ')})`;
}

function leaf(e: ErrorObject): string {
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String((e.params as { additionalProperty: unknown }).additionalProperty);
      return `${pointer(`${e.instancePath}/${key}`)}: unknown key${knownKeys(e.parentSchema)}`;
    }
    case 'required': {
      const key = String((e.params as { missingProperty: unknown }).missingProperty);
      return `${pointer(`${e.instancePath}/${key}`)}: required`;
    }
    case 'const':
      return `${pointer(e.instancePath)}: must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}${got(e.data)}`;
    case 'enum':
      return `${pointer(e.instancePath)}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}${got(e.data)}`;
    default:
      return `${pointer(e.instancePath)}: ${e.message ?? 'is invalid'}${got(e.data)}`;
  }
}

function union(anyOf: ErrorObject, branches: readonly ErrorObject[]): string {
  const parent: unknown = anyOf.parentSchema;
  const expects = isRecord(parent) ? parent['x-expects'] : undefined;
  if (typeof expects === 'string') return `${pointer(anyOf.instancePath)}: must be ${expects}${got(anyOf.data)}`;
  const consts = branches.filter((b) => b.keyword === 'const').map((b) => JSON.stringify((b.params as { allowedValue: unknown }).allowedValue));
  if (consts.length > 0 && consts.length === branches.length) {
    return `${pointer(anyOf.instancePath)}: must be one of ${consts.join(', ')}${got(anyOf.data)}`;
  }
  const reasons = [...new Set(branches.map((b) => b.message ?? 'invalid'))];
  return `${pointer(anyOf.instancePath)}: ${reasons.join(' or ')}${got(anyOf.data)}`;
}

/** `prefix` (a JSON pointer such as '/params') is prepended to every path. Needs ajv's `verbose` option. */
export function describeErrors(errors: readonly ErrorObject[], prefix = ''): string[] {
  const withPrefix = prefix === '' ? errors : errors.map((e) => ({ ...e, instancePath: prefix + e.instancePath }));
  const unions = withPrefix.filter((e) => e.keyword === 'anyOf');
  const inUnion = (e: ErrorObject, u: ErrorObject): boolean => e !== u && e.schemaPath.startsWith(`${u.schemaPath}/`);
  const lines: string[] = [];
  for (const e of withPrefix) {
    if (e.keyword === 'anyOf')
      lines.push(
        union(
          e,
          withPrefix.filter((b) => inUnion(b, e)),
        ),
      );
    else if (!unions.some((u) => inUnion(e, u))) lines.push(leaf(e));
  }
  return [...new Set(lines)];
}
