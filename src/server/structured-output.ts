/**
 * Structured outputs: a request's `response_format` (chat, completions) or
 * `text.format` (Responses API) as a grammar the engine enforces while it
 * samples (engine/grammar/), and the `cap.constraint` report of what it did.
 * Compiled here, once per request, so an unsupported schema is a 400 naming
 * the schema path before anything is queued.
 */
import type { Grammar } from '../engine/grammar/grammar.js';
import { grammarForJsonObject, grammarFromJsonSchema, SchemaError } from '../engine/grammar/json-schema.js';
import type { ConstraintReport } from '../engine/grammar/matcher.js';
import { ApiError } from './errors.js';
import type { ResponsesText } from './request-schemas.js';

export interface OutputConstraint {
  readonly type: 'json_schema' | 'json_object' | 'tool_calls' | 'tools_auto' | 'regex' | 'grammar' | 'choice';
  /** The schema's or the forced function's name. */
  readonly name: string | null;
  readonly grammar: Grammar;
  /** Milliseconds spent compiling the schema to a grammar. */
  readonly compileMs: number;
}

/** The `cap.constraint` object. */
export interface ConstraintCap {
  readonly type: OutputConstraint['type'];
  readonly name: string | null;
  readonly grammar_rules: number;
  readonly compile_ms: number;
  /** Parser states of the shared automaton, mask time per choice (mean), and whether each choice completed its document. */
  readonly automaton_states: number | null;
  readonly mask_ms: number | null;
  readonly complete: boolean | null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export function compileSchema(schema: unknown, param: string): { grammar: Grammar; compileMs: number } {
  const t0 = performance.now();
  try {
    return { grammar: grammarFromJsonSchema(schema), compileMs: performance.now() - t0 };
  } catch (err) {
    if (err instanceof SchemaError) {
      throw new ApiError('invalid_request', `Invalid schema for ${param}: ${err.message}.`, { param: err.path === '' ? param : `${param}.${err.path}` });
    }
    if (err instanceof RangeError) throw new ApiError('invalid_request', `Invalid schema for ${param}: ${err.message}.`, { param });
    throw err;
  }
}

/**
 * A chat or completions `response_format` ({type: text | json_object |
 * json_schema}) as a constraint; null for text. `param` names the field in errors.
 */
export function responseFormatConstraint(format: unknown, param = 'response_format'): OutputConstraint | null {
  if (format === null || format === undefined || !isObject(format)) return null;
  switch (format['type']) {
    case 'text':
      return null;
    case 'json_object':
      return { type: 'json_object', name: null, grammar: grammarForJsonObject(), compileMs: 0 };
    case 'json_schema': {
      const spec = format['json_schema'];
      if (!isObject(spec))
        throw new ApiError('invalid_request', `'${param}.json_schema' is required when the type is 'json_schema'.`, { param: `${param}.json_schema` });
      return schemaConstraint(spec, `${param}.json_schema`);
    }
    default:
      throw new ApiError('invalid_request', `Unknown ${param} type '${String(format['type'])}'.`, { param: `${param}.type` });
  }
}

/** The Responses API's text.format: json_schema carries name and schema at its own level. */
export function textFormatConstraint(format: ResponsesText['format'], param = 'text.format'): OutputConstraint | null {
  if (format === undefined || format === null) return null;
  if (format.type === 'json_schema') return schemaConstraint(format, param);
  return responseFormatConstraint(format, param);
}

/** {name, schema, strict, description}: the json_schema object of chat, or the flattened format of the Responses API. */
export function schemaConstraint(spec: Record<string, unknown>, param: string): OutputConstraint {
  const name = spec['name'];
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new ApiError('invalid_request', `'${param}.name' must be 1 to 64 letters, digits, '_' or '-'.`, { param: `${param}.name` });
  }
  // No schema: every JSON value is as much as OpenAI promises then.
  const schema = spec['schema'] ?? {};
  const { grammar, compileMs } = compileSchema(schema, `${param}.schema`);
  return { type: 'json_schema', name, grammar, compileMs };
}

/** What the response's `cap.constraint` says: the request's constraint and, per choice, what the engine reported. */
export function constraintCap(constraint: OutputConstraint | null, reports: readonly (ConstraintReport | null | undefined)[]): ConstraintCap | null {
  if (constraint === null) return null;
  const got = reports.filter((r): r is ConstraintReport => r !== null && r !== undefined);
  return {
    type: constraint.type,
    name: constraint.name,
    grammar_rules: constraint.grammar.rules.length,
    compile_ms: round(constraint.compileMs),
    automaton_states: got.length === 0 ? null : Math.max(...got.map((r) => r.states)),
    mask_ms: got.length === 0 ? null : round(got.reduce((s, r) => s + r.maskMs, 0) / got.length),
    complete: got.length === 0 ? null : got.every((r) => r.complete),
  };
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;
