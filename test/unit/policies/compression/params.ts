/** Validates params the way policy files are validated (ajv strict, defaults filled, no coercion). */
import type { TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true });
ajv.addKeyword({ keyword: 'x-expects', schemaType: 'string' });

export function validate(schema: TSchema, raw: Record<string, unknown>): { ok: true; value: Record<string, unknown> } | { ok: false; errors: ErrorObject[] } {
  const v = ajv.compile(schema);
  const value = structuredClone(raw);
  return v(value) ? { ok: true, value } : { ok: false, errors: v.errors ?? [] };
}

/** Defaults filled; throws listing the errors when invalid. */
export function params(schema: TSchema, raw: Record<string, unknown> = {}): Record<string, unknown> {
  const r = validate(schema, raw);
  if (!r.ok) throw new Error(`invalid params: ${r.errors.map((e) => `${e.instancePath} ${e.message}`).join('; ')}`);
  return r.value;
}
