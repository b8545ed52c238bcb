/**
 * JSON Schema -> byte grammar (grammar.ts), for the subset OpenAI's strict
 * structured outputs accept: objects (properties in schema order, required
 * ones always present, optional ones skippable, no extra keys), arrays
 * (items, minItems, maxItems), enum / const, strings (minLength, maxLength),
 * numbers and integers, booleans, null, anyOf, type lists, $ref into
 * $defs / definitions (recursion allowed). `true` / `{}` is any JSON value.
 *
 * What the generated JSON looks like (a choice, as llguidance and XGrammar
 * make one): compact, with at most one space after ':' and ','; numbers have
 * at most 15 integer digits, 15 fraction digits and a 2-digit exponent, so
 * every document parses to a finite double. Every document the grammar
 * accepts is valid against the schema; the converse holds up to these limits.
 *
 * A keyword that constrains values in a way this compiler cannot enforce
 * (pattern, format, multipleOf, numeric bounds other than >= 0, ...) is an
 * error naming its JSON path, so the client gets a 400 instead of output that
 * silently ignores part of its schema.
 */
import { type Alternative, bytesOf, ch, type Element, GrammarBuilder, type Grammar, ref, set } from './grammar.js';

export class SchemaError extends Error {
  constructor(
    /** JSON pointer-ish path into the schema, e.g. "properties.age.minimum". */
    readonly path: string,
    message: string,
  ) {
    super(path === '' ? message : `${message} (at ${path})`);
    this.name = 'SchemaError';
  }
}

/** Keywords that only annotate, or that this compiler reads itself. */
const KNOWN = new Set([
  '$schema',
  '$id',
  '$anchor',
  '$comment',
  'title',
  'description',
  'default',
  'examples',
  'deprecated',
  'readOnly',
  'writeOnly',
  '$defs',
  'definitions',
  '$ref',
  'type',
  'enum',
  'const',
  'anyOf',
  'allOf',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'strict',
  'nullable',
]);
/** Validation keywords that would be silently ignored: refused instead. */
const UNSUPPORTED = new Set([
  'pattern',
  'format',
  'multipleOf',
  'uniqueItems',
  'contains',
  'minContains',
  'maxContains',
  'prefixItems',
  'not',
  'if',
  'then',
  'else',
  'oneOf',
  'patternProperties',
  'propertyNames',
  'minProperties',
  'maxProperties',
  'dependentRequired',
  'dependentSchemas',
  'dependencies',
  'unevaluatedProperties',
  'unevaluatedItems',
  'contentEncoding',
  'contentMediaType',
  'contentSchema',
  '$dynamicRef',
  '$recursiveRef',
]);

/** Unrolled repetition counts above this are refused (the grammar grows linearly with them). */
export const MAX_UNROLL = 1024;
const INT_DIGITS = 15;
const FRACTION_DIGITS = 15;
const EXPONENT_DIGITS = 2;
/** |x| < 1e15 always holds for the numbers generated, so bounds at least this wide constrain nothing. */
const IMPLIED_BOUND = 1e15;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type SchemaObject = Record<string, unknown>;

const isObject = (v: unknown): v is SchemaObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const join = (path: string, key: string | number): string => (path === '' ? String(key) : `${path}.${key}`);

/** Compiles `schema` to a grammar whose language is JSON documents valid against it. */
export function grammarFromJsonSchema(schema: unknown): Grammar {
  const b = new GrammarBuilder();
  const root = b.reserve();
  const c = new JsonGrammar(b, schema);
  b.define(root, [[ref(c.schema(schema, ''))]]);
  return b.build(root);
}

/** Any JSON object (response_format json_object). */
export function grammarForJsonObject(): Grammar {
  const b = new GrammarBuilder();
  const root = b.reserve();
  const c = new JsonGrammar(b, {});
  b.define(root, [[ref(c.anyObject())]]);
  return b.build(root);
}

/**
 * Builds JSON grammars into a shared GrammarBuilder, so other grammars (tool
 * calls) can embed schema-constrained values.
 */
export class JsonGrammar {
  private readonly memo = new Map<unknown, number>();
  private readonly shared = new Map<string, number>();

  constructor(
    readonly b: GrammarBuilder,
    /** The document $ref pointers resolve against. */
    private readonly rootSchema: unknown,
  ) {}

  /** Optional single space after ':' and ','. */
  space(): number {
    return this.once('space', () => this.b.rule([[ch(' ')], []]));
  }

  /** ':' then an optional space. */
  colon(): Element[] {
    return [ch(':'), ref(this.space())];
  }

  comma(): Element[] {
    return [ch(','), ref(this.space())];
  }

  schema(schema: unknown, path: string): number {
    const known = this.memo.get(schema);
    if (known !== undefined) return known;
    if (schema === true) return this.anyValue();
    if (schema === false) throw new SchemaError(path, 'the schema `false` accepts no value');
    if (!isObject(schema)) throw new SchemaError(path, 'a schema must be an object or a boolean');
    const id = this.b.reserve();
    this.memo.set(schema, id);
    this.b.define(id, this.alternatives(schema, path));
    return id;
  }

  private alternatives(s: SchemaObject, path: string): Alternative[] {
    for (const key of Object.keys(s)) {
      if (UNSUPPORTED.has(key)) throw new SchemaError(join(path, key), `the JSON Schema keyword '${key}' is not supported`);
    }
    if (typeof s['$ref'] === 'string') {
      const others = Object.keys(s).filter(
        (k) => KNOWN.has(k) && !['$ref', 'title', 'description', '$comment', 'default', 'examples', '$defs', 'definitions'].includes(k),
      );
      if (others.length > 0) throw new SchemaError(join(path, others[0] ?? ''), "'$ref' with sibling validation keywords is not supported");
      const target = this.resolve(s['$ref'], join(path, '$ref'));
      return [[ref(this.schema(target, s['$ref']))]];
    }
    if ('allOf' in s) {
      const all = s['allOf'];
      if (!Array.isArray(all) || all.length !== 1) throw new SchemaError(join(path, 'allOf'), "'allOf' is supported only with a single schema");
      return [[ref(this.schema(all[0], join(path, 'allOf.0')))]];
    }
    if ('anyOf' in s) {
      const any = s['anyOf'];
      if (!Array.isArray(any) || any.length === 0) throw new SchemaError(join(path, 'anyOf'), "'anyOf' must be a non-empty array");
      return any.map((sub, i) => [ref(this.schema(sub, join(path, `anyOf.${i}`)))]);
    }
    if ('const' in s) return [bytesOf(JSON.stringify(s['const']))];
    if ('enum' in s) {
      const values = s['enum'];
      if (!Array.isArray(values) || values.length === 0) throw new SchemaError(join(path, 'enum'), "'enum' must be a non-empty array");
      return values.map((v) => bytesOf(JSON.stringify(v as Json)));
    }
    let types: unknown = s['type'];
    if (types === undefined) {
      if ('properties' in s || 'additionalProperties' in s || 'required' in s) types = 'object';
      else if ('items' in s || 'minItems' in s || 'maxItems' in s) types = 'array';
      else if ('minLength' in s || 'maxLength' in s) types = 'string';
      else return [[ref(this.anyValue())]];
    }
    const list: unknown[] = Array.isArray(types) ? [...(types as unknown[])] : [types];
    if (list.length === 0) throw new SchemaError(join(path, 'type'), "'type' must not be empty");
    if (s['nullable'] === true && !list.includes('null')) list.push('null');
    return list.map((t) => [ref(this.typed(s, t, path))]);
  }

  private typed(s: SchemaObject, type: unknown, path: string): number {
    switch (type) {
      case 'object':
        return this.object(s, path);
      case 'array':
        return this.array(s, path);
      case 'string':
        return this.string(s, path);
      case 'number':
        return this.number(s, path, false);
      case 'integer':
        return this.number(s, path, true);
      case 'boolean':
        return this.once('boolean', () => this.b.rule([bytesOf('true'), bytesOf('false')]));
      case 'null':
        return this.b.literal('null');
      default:
        throw new SchemaError(join(path, 'type'), `unknown type ${JSON.stringify(type)}`);
    }
  }

  private resolve(pointer: string, path: string): unknown {
    if (!pointer.startsWith('#')) throw new SchemaError(path, `only local references ('#/...') are supported, got '${pointer}'`);
    let node: unknown = this.rootSchema;
    const parts = pointer === '#' ? [] : pointer.slice(pointer.startsWith('#/') ? 2 : 1).split('/');
    for (const raw of parts) {
      const part = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
      if (!isObject(node) || !(part in node)) throw new SchemaError(path, `the reference '${pointer}' does not resolve`);
      node = node[part];
    }
    return node;
  }

  private object(s: SchemaObject, path: string): number {
    const props = s['properties'];
    if (props !== undefined && !isObject(props)) throw new SchemaError(join(path, 'properties'), "'properties' must be an object");
    const required = s['required'] ?? [];
    if (!Array.isArray(required) || !required.every((r) => typeof r === 'string')) {
      throw new SchemaError(join(path, 'required'), "'required' must be an array of property names");
    }
    const names = Object.keys(props ?? {});
    for (const r of required) {
      if (!names.includes(r)) throw new SchemaError(join(path, 'required'), `required property '${r}' is not in 'properties'`);
    }
    const extra = s['additionalProperties'];
    if (names.length === 0) {
      if (extra === false) return this.b.literal('{}');
      if (isObject(extra) && Object.keys(extra).length > 0) return this.map(this.schema(extra, join(path, 'additionalProperties')));
      return this.anyObject();
    }
    // Properties come in schema order; extra keys are never generated (a valid subset when they are allowed).
    const req = new Set(required);
    const values = names.map((name) => this.schema((props as SchemaObject)[name], join(path, `properties.${name}`)));
    // rest[i][started]: properties i.. given whether one was already written (then a comma comes first).
    const rest: number[][] = [];
    const close = this.b.literal('}');
    for (let i = names.length; i >= 0; i--) {
      rest[i] = [0, 1].map((started) => {
        if (i === names.length) return close;
        const name = names[i] as string;
        const write: Alternative = [
          ...(started ? this.comma() : []),
          ...bytesOf(JSON.stringify(name)),
          ...this.colon(),
          ref(values[i] ?? 0),
          ref(rest[i + 1]?.[1] ?? 0),
        ];
        const alts: Alternative[] = [write];
        if (!req.has(name)) alts.push([ref(rest[i + 1]?.[started] ?? 0)]);
        return this.b.rule(alts);
      });
    }
    return this.b.rule([[ch('{'), ref(rest[0]?.[0] ?? 0)]]);
  }

  private array(s: SchemaObject, path: string): number {
    const item = this.schema(s['items'] ?? true, join(path, 'items'));
    const min = this.count(s, 'minItems', path) ?? 0;
    const max = this.count(s, 'maxItems', path);
    return this.repeat(item, min, max, ch('['), ch(']'), this.comma(), join(path, 'maxItems'));
  }

  private string(s: SchemaObject, path: string): number {
    const min = this.count(s, 'minLength', path) ?? 0;
    const max = this.count(s, 'maxLength', path);
    if (min === 0 && max === null) return this.anyString();
    return this.repeat(this.stringChar(), min, max, ch('"'), ch('"'), [], join(path, 'maxLength'));
  }

  /**
   * open item (sep item)* close with min..max items. after[k]: what may follow
   * k items; counts past the bounds share one rule, so an unbounded list is a loop.
   */
  private repeat(item: number, min: number, max: number | null, open: Element, close: Element, sep: Element[], path: string): number {
    if (max !== null && max < min) throw new SchemaError(path, `the maximum (${max}) is below the minimum (${min})`);
    const top = max ?? Math.max(min, 1);
    if (top > MAX_UNROLL) throw new SchemaError(path, `counts above ${MAX_UNROLL} are not supported`);
    const after: number[] = [];
    for (let k = top; k >= 1; k--) after[k] = this.b.reserve();
    for (let k = top; k >= 1; k--) {
      const alts: Alternative[] = [];
      if (k >= min) alts.push([close]);
      if (max === null && k === top) alts.push([...sep, ref(item), ref(after[k] ?? 0)]);
      else if (max === null || k < max) alts.push([...sep, ref(item), ref(after[k + 1] ?? 0)]);
      this.b.define(after[k] ?? 0, alts);
    }
    const first: Alternative[] = [];
    if (min === 0) first.push([close]);
    if (max === null || max > 0) first.push([ref(item), ref(after[1] ?? 0)]);
    const body = this.b.rule(first);
    return this.b.rule([[open, ref(body)]]);
  }

  private count(s: SchemaObject, key: string, path: string): number | null {
    const v = s[key];
    if (v === undefined) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new SchemaError(join(path, key), `'${key}' must be a non-negative integer`);
    return v;
  }

  private number(s: SchemaObject, path: string, integer: boolean): number {
    let nonNegative = false;
    for (const key of ['minimum', 'exclusiveMinimum', 'maximum', 'exclusiveMaximum']) {
      const v = s[key];
      if (v === undefined) continue;
      if (typeof v !== 'number') throw new SchemaError(join(path, key), `'${key}' must be a number`);
      const lower = key.endsWith('inimum');
      if (lower ? v <= -IMPLIED_BOUND : v >= IMPLIED_BOUND) continue;
      if (key === 'minimum' && v === 0) {
        nonNegative = true;
        continue;
      }
      throw new SchemaError(join(path, key), `'${key}' is supported only as minimum: 0 (or a bound beyond ±1e15)`);
    }
    const name = `${integer ? 'integer' : 'number'}${nonNegative ? '+' : ''}`;
    return this.once(name, () => {
      const digits = (n: number): Element[] => [set(0x30, 0x39), ref(this.upTo(n - 1, set(0x30, 0x39)))];
      const intPart = this.once('int-part', () => this.b.rule([[ch('0')], [set(0x31, 0x39), ref(this.upTo(INT_DIGITS - 1, set(0x30, 0x39)))]]));
      const sign = nonNegative ? [] : [ref(this.once('minus?', () => this.b.rule([[ch('-')], []])))];
      if (integer) return this.b.rule([[...sign, ref(intPart)]]);
      const fraction = this.once('fraction?', () => this.b.rule([[ch('.'), ...digits(FRACTION_DIGITS)], []]));
      const exponent = this.once('exponent?', () =>
        this.b.rule([[set(0x45, 0x45, 0x65, 0x65), ref(this.b.rule([[set(0x2b, 0x2b, 0x2d, 0x2d)], []])), ...digits(EXPONENT_DIGITS)], []]),
      );
      return this.b.rule([[...sign, ref(intPart), ref(fraction), ref(exponent)]]);
    });
  }

  /** 0..n repetitions of one element. */
  private upTo(n: number, el: Element): number {
    let next = this.b.rule([[]]);
    for (let k = 1; k <= n; k++) next = this.b.rule([[el, ref(next)], []]);
    return next;
  }

  /** One JSON string character: unescaped, an escape, or a multi-byte UTF-8 sequence (well-formed only). */
  stringChar(): number {
    return this.once('char', () => {
      const cont = set(0x80, 0xbf);
      const hex = set(0x30, 0x39, 0x41, 0x46, 0x61, 0x66);
      return this.b.rule([
        [set(0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f)],
        [ch('\\'), set(0x22, 0x22, 0x2f, 0x2f, 0x5c, 0x5c, 0x62, 0x62, 0x66, 0x66, 0x6e, 0x6e, 0x72, 0x72, 0x74, 0x74)],
        [ch('\\'), ch('u'), hex, hex, hex, hex],
        [set(0xc2, 0xdf), cont],
        [set(0xe0, 0xe0), set(0xa0, 0xbf), cont],
        [set(0xe1, 0xec, 0xee, 0xef), cont, cont],
        [set(0xed, 0xed), set(0x80, 0x9f), cont],
        [set(0xf0, 0xf0), set(0x90, 0xbf), cont, cont],
        [set(0xf1, 0xf3), cont, cont, cont],
        [set(0xf4, 0xf4), set(0x80, 0x8f), cont, cont],
      ]);
    });
  }

  anyString(): number {
    return this.once('string', () => {
      const body = this.b.reserve();
      this.b.define(body, [[ch('"')], [ref(this.stringChar()), ref(body)]]);
      return this.b.rule([[ch('"'), ref(body)]]);
    });
  }

  /** A JSON object whose values all match `value` (any keys). */
  private map(value: number): number {
    const members = this.b.reserve();
    const member: Alternative = [ref(this.anyString()), ...this.colon(), ref(value)];
    this.b.define(members, [[ch('}')], [...this.comma(), ...member, ref(members)]]);
    return this.b.rule([[ch('{'), ref(this.b.rule([[ch('}')], [...member, ref(members)]]))]]);
  }

  anyObject(): number {
    return this.once('object', () => {
      const value = this.anyValue();
      return this.map(value);
    });
  }

  anyValue(): number {
    const known = this.shared.get('value');
    if (known !== undefined) return known;
    const value = this.b.reserve();
    this.shared.set('value', value);
    const array = this.b.reserve();
    const items = this.b.reserve();
    this.b.define(items, [[ch(']')], [...this.comma(), ref(value), ref(items)]]);
    this.b.define(array, [[ch('['), ref(this.b.rule([[ch(']')], [ref(value), ref(items)]]))]]);
    this.b.define(value, [
      [ref(this.anyObject())],
      [ref(array)],
      [ref(this.anyString())],
      [ref(this.number({}, '', false))],
      [ref(this.typed({}, 'boolean', ''))],
      [ref(this.b.literal('null'))],
    ]);
    return value;
  }

  private once(key: string, make: () => number): number {
    const known = this.shared.get(key);
    if (known !== undefined) return known;
    const id = make();
    this.shared.set(key, id);
    return id;
  }
}
