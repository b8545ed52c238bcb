/**
 * Policy files: `policies/*.yaml` = {name, kind, method, params}, validated
 * strictly (no removeAdditional, no coercion: a misspelled key or a quoted
 * number is an error) against the method's own schema, defaults filled in.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Ajv, type ValidateFunction } from 'ajv';
import YAML from 'yaml';
import { PolicyError } from './errors.js';
import { full } from './full.js';
import { getMethod, METHODS } from './methods.js';
import type { MethodDefinition, PolicyParams } from './method-types.js';
import type { Policy } from './policy.js';
import { describeErrors, pointer } from './schema-errors.js';

export const KEBAB_CASE = '^[a-z0-9]+(-[a-z0-9]+)*$';
export const FULL_POLICY_NAME = 'full';

const Envelope = Type.Object(
  {
    name: Type.String({ pattern: KEBAB_CASE, maxLength: 64, description: 'Stable kebab-case name, unique across policies.' }),
    kind: Type.Union([
      Type.Literal('none'),
      Type.Literal('kv-eviction'),
      Type.Literal('sparse-attention'),
      Type.Literal('kv-quantization'),
      Type.Literal('context-compression'),
      Type.Literal('expert-offload'),
      Type.Literal('weight-elastic'),
    ]),
    method: Type.String({ minLength: 1 }),
    params: Type.Object({}, { additionalProperties: true, default: {} }),
  },
  { additionalProperties: false },
);

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, verbose: true });
ajv.addKeyword({ keyword: 'x-expects', schemaType: 'string' });
const validateEnvelope = ajv.compile<Static<typeof Envelope>>(Envelope);
const paramValidators = new Map<string, ValidateFunction>();

function paramValidator(method: MethodDefinition): ValidateFunction {
  let v = paramValidators.get(method.method);
  if (v === undefined) {
    v = ajv.compile(method.schema);
    paramValidators.set(method.method, v);
  }
  return v;
}

function fail(file: string, lines: readonly string[]): PolicyError {
  return new PolicyError(lines.map((l) => `${file}: ${l}`).join('\n'));
}

function freezePolicy(name: string, method: MethodDefinition, params: PolicyParams, source: string): Policy {
  return Object.freeze({
    name,
    kind: method.kind,
    method: method.method,
    params: Object.freeze({ ...params }),
    cap: method.cap,
    needs: Object.freeze(method.needs(params)),
    positions: method.kind === 'kv-eviction' ? method.positions : null,
    source,
  });
}

/** The built-in `full` policy: always present, kind 'none'. */
export const FULL_POLICY: Policy = freezePolicy(FULL_POLICY_NAME, full, {}, '<built-in>');

/** Parses and validates one policy file's text; `file` names it in errors. */
export function parsePolicyFile(yamlText: string, file: string): Policy {
  let raw: unknown;
  try {
    raw = YAML.parse(yamlText, { prettyErrors: true });
  } catch (err) {
    throw new PolicyError(`${file}: invalid YAML: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw fail(file, [
      `${pointer('')}: must be a mapping {name, kind, method, params}, got ${raw === null || raw === undefined ? 'an empty document' : Array.isArray(raw) ? 'a sequence' : typeof raw}`,
    ]);
  }
  if (!validateEnvelope(raw)) {
    const lines = describeErrors(validateEnvelope.errors ?? []).map((l) =>
      l.startsWith('/name: must match pattern')
        ? `/name: must be kebab-case (lowercase letters and digits joined by single hyphens)${l.slice(l.indexOf(', got'))}`
        : l,
    );
    throw fail(file, lines);
  }
  const doc = raw;
  const method = getMethod(doc.method);
  if (method === undefined) {
    throw fail(file, [`/method: unknown method ${JSON.stringify(doc.method)} (known: ${METHODS.map((m) => m.method).join(', ')})`]);
  }
  if (doc.kind !== method.kind) {
    throw fail(file, [`/kind: must be ${JSON.stringify(method.kind)} for method ${JSON.stringify(method.method)}, got ${JSON.stringify(doc.kind)}`]);
  }
  const validate = paramValidator(method);
  if (!validate(doc.params)) throw fail(file, describeErrors(validate.errors ?? [], '/params'));
  const issues = method.check(doc.params);
  if (issues.length > 0)
    throw fail(
      file,
      issues.map((i) => `${pointer(`/params${i.path}`)}: ${i.message}`),
    );
  return freezePolicy(doc.name, method, doc.params, file);
}

/**
 * Loads every `*.yaml` / `*.yml` in `dir` (sorted), checks that each name
 * matches its file name and is unique, and adds the built-in `full` unless a
 * file defines it. Reports every bad file at once.
 */
export function loadPolicies(dir: string): ReadonlyMap<string, Policy> {
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .sort();
  } catch (err) {
    throw new PolicyError(`${dir}: cannot read the policies directory: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const errors: string[] = [];
  const byName = new Map<string, Policy>();
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      const policy = parsePolicyFile(readFileSync(file, 'utf8'), file);
      const stem = name.replace(/\.ya?ml$/, '');
      const earlier = byName.get(policy.name);
      if (policy.name !== stem) errors.push(`${file}: /name: must match the file name ${JSON.stringify(stem)}, got ${JSON.stringify(policy.name)}`);
      else if (earlier !== undefined) errors.push(`${file}: /name: ${JSON.stringify(policy.name)} is already defined by ${earlier.source}`);
      else byName.set(policy.name, policy);
    } catch (err) {
      if (err instanceof PolicyError) errors.push(err.message);
      else errors.push(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (errors.length > 0) throw new PolicyError(`invalid policies:\n  ${errors.join('\n').split('\n').join('\n  ')}`);
  const fullPolicy = byName.get(FULL_POLICY_NAME);
  if (fullPolicy !== undefined && fullPolicy.kind !== 'none') {
    throw new PolicyError(`${fullPolicy.source}: /kind: the name "full" is reserved for the no-policy baseline (method "none")`);
  }
  const out = new Map<string, Policy>([[FULL_POLICY_NAME, fullPolicy ?? FULL_POLICY]]);
  for (const [name, policy] of byName) if (name !== FULL_POLICY_NAME) out.set(name, policy);
  return out;
}
