import type { Static, TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { ApiError } from './errors.js';

// No coerceTypes and no removeAdditional: OpenAI rejects "temperature": "0.5"
// and unknown arguments, and so do we, with the parameter named.
// verbose: errors carry their schema, so a union's `x-expects` text can say what it accepts in one line.
const ajv = new Ajv({ allErrors: false, strict: true, verbose: true });
ajv.addKeyword({ keyword: 'x-expects', schemaType: 'string' });

function paramOf(instancePath: string, extra?: string): string {
  const segments = instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) segments.push(extra);
  let out = '';
  for (const s of segments) out += /^\d+$/.test(s) ? `[${s}]` : out === '' ? s : `.${s}`;
  return out;
}

function describeOne(error: ErrorObject, relativeTo: string): string {
  const here = paramOf(error.instancePath);
  const prefix = here === relativeTo ? '' : `'${here}' `;
  if (error.keyword === 'const') {
    return `${prefix}must be ${JSON.stringify((error.params as { allowedValue: unknown }).allowedValue)}`;
  }
  return `${prefix}${error.message ?? 'is invalid'}`;
}

/** A union that describes itself (`x-expects`, e.g. cap.overflow): its failure reads as one line. */
function expectsError(errors: readonly ErrorObject[]): ApiError | null {
  for (const e of errors) {
    if (e.keyword !== 'anyOf') continue;
    const parent: unknown = e.parentSchema;
    const text = parent !== null && typeof parent === 'object' ? (parent as Record<string, unknown>)['x-expects'] : undefined;
    if (typeof text !== 'string') continue;
    const param = paramOf(e.instancePath);
    return new ApiError('invalid_request', `Invalid value for '${param}': expected ${text}.`, { param });
  }
  return null;
}

function toApiError(errors: readonly ErrorObject[]): ApiError {
  const first = errors[0];
  if (first === undefined) return new ApiError('invalid_request', 'Invalid request.');
  const described = expectsError(errors);
  if (described !== null) return described;
  const anyOf = errors.find((e) => e.keyword === 'anyOf');
  // A failed anyOf lists each branch's complaint before the anyOf itself; only
  // the shallowest anyOf is the parameter the client got wrong.
  if (anyOf !== undefined && errors.every((e) => e.instancePath.startsWith(anyOf.instancePath))) {
    const param = paramOf(anyOf.instancePath);
    const byBranch = new Map<string, ErrorObject[]>();
    for (const e of errors) {
      if (e === anyOf || !e.schemaPath.startsWith(`${anyOf.schemaPath}/`)) continue;
      const branch = e.schemaPath.slice(anyOf.schemaPath.length + 1).split('/', 1)[0] ?? '';
      byBranch.set(branch, [...(byBranch.get(branch) ?? []), e]);
    }
    // "or null" (every optional parameter allows null) says nothing useful about a non-null value.
    const isNullBranch = (list: readonly ErrorObject[]): boolean =>
      list.length === 1 && list[0]?.keyword === 'type' && (list[0].params as { type: unknown }).type === 'null';
    const useful = [...byBranch.values()].filter((list) => !isNullBranch(list));
    if (useful.length === 1) return toApiError(useful[0] as ErrorObject[]);
    const reasons = [...new Set(useful.map((list) => describeOne(list[0] as ErrorObject, param)))];
    return new ApiError('invalid_request', `Invalid value for '${param}': ${reasons.join(', or ')}.`, { param });
  }
  if (first.keyword === 'additionalProperties') {
    const param = paramOf(first.instancePath, String((first.params as { additionalProperty: unknown }).additionalProperty));
    return new ApiError('unknown_parameter', `Unrecognized request argument supplied: ${param}`, { param });
  }
  if (first.keyword === 'required') {
    const param = paramOf(first.instancePath, String((first.params as { missingProperty: unknown }).missingProperty));
    return new ApiError('invalid_request', `Missing required parameter: '${param}'.`, { param });
  }
  const param = paramOf(first.instancePath);
  const key = (first as ErrorObject & { propertyName?: string }).propertyName;
  if (key !== undefined) {
    return new ApiError('invalid_request', `Invalid key '${key}' in '${param}': ${first.message ?? 'is invalid'}.`, { param });
  }
  return new ApiError('invalid_request', `Invalid value for '${param}': ${describeOne(first, param)}.`, { param: param === '' ? null : param });
}

/** Compiles a body validator that throws an ApiError naming the offending parameter. */
export function compileValidator<T extends TSchema>(schema: T): (value: unknown) => Static<T> {
  const validate: ValidateFunction = ajv.compile(schema);
  return (value: unknown): Static<T> => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new ApiError('invalid_request', 'The request body must be a JSON object.');
    }
    if (!validate(value)) throw toApiError(validate.errors ?? []);
    return value;
  };
}
