import t from 'tap';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import { GrammarAutomaton } from '../../../../src/engine/grammar/automaton.js';
import { GrammarBuilder, bytesOf, ch, ref, set } from '../../../../src/engine/grammar/grammar.js';
import { grammarForJsonObject, grammarFromJsonSchema, SchemaError } from '../../../../src/engine/grammar/json-schema.js';
import { GrammarMatcher } from '../../../../src/engine/grammar/matcher.js';
import { TokenTrie } from '../../../../src/engine/grammar/token-trie.js';
import { Xoshiro128 } from '../../../../src/engine/sampling/rng.js';
import { accepts } from '../../../helpers/grammar.js';

/**
 * A test vocabulary: every single byte (ids 0..255, as byte-fallback and
 * byte-level vocabularies have), multi-byte pieces a JSON-writing model would
 * have, and one special token (EOS) with no bytes.
 */
const PIECES = [
  '{"',
  '":',
  '": ',
  '",',
  '", "',
  '"}',
  '}}',
  '[]',
  '{}',
  'true',
  'false',
  'null',
  'name',
  ' the',
  'age',
  '12',
  '0.',
  'e+',
  '\\u00',
  '\\n',
  'é',
  '"name":"',
  ',"',
  '":"',
  '"]',
  ' ',
  'abc"',
  '1e',
];
const EOS = 256 + PIECES.length;
const VOCAB = EOS + 1;
const tokenBytes: (Uint8Array | null)[] = [
  ...Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)),
  ...PIECES.map((p) => Uint8Array.from(Buffer.from(p, 'utf8'))),
  null,
];
const trie = new TokenTrie(tokenBytes, VOCAB);
const stopIds = new Set([EOS]);

/** Samples a document token by token from the masks (uniform over allowed tokens, EOS when allowed), as the engine would. */
function sample(a: GrammarAutomaton, rng: Xoshiro128, maxTokens: number): { text: string; finished: boolean } {
  const m = new GrammarMatcher(a, stopIds);
  const bytes: number[] = [];
  for (let step = 0; step < maxTokens; step++) {
    if (m.finished) return { text: Buffer.from(bytes).toString('utf8'), finished: true };
    const work = new Float32Array(VOCAB).fill(0);
    m.apply(work, maxTokens - step);
    const ids: number[] = [];
    work.forEach((v, id) => {
      if (v > -Infinity) ids.push(id);
    });
    assert.ok(ids.length > 0, 'some token is always allowed');
    const id = ids[Math.floor(rng.nextFloat() * ids.length)] ?? 0;
    if (id === EOS) return { text: Buffer.from(bytes).toString('utf8'), finished: true };
    m.accept(id);
    bytes.push(...(tokenBytes[id] ?? []));
  }
  return { text: Buffer.from(bytes).toString('utf8'), finished: m.accepting };
}

const ajv = new Ajv({ strict: false });

const SUITE: { name: string; schema: object; valid: string[]; invalid: string[] }[] = [
  {
    name: 'nested objects with required and optional properties',
    schema: {
      type: 'object',
      properties: {
        name: { type: 'string' },
        age: { type: 'integer' },
        address: { type: 'object', properties: { city: { type: 'string' }, zip: { type: 'string' } }, required: ['city'], additionalProperties: false },
      },
      required: ['name', 'age'],
      additionalProperties: false,
    },
    valid: ['{"name":"Ann","age":3}', '{"name": "Ann", "age": -12, "address": {"city": "Oslo"}}', '{"name":"","age":0,"address":{"city":"x","zip":"0"}}'],
    invalid: [
      '{"age":3,"name":"Ann"}',
      '{"name":"Ann"}',
      '{"name":"Ann","age":3,"x":1}',
      '{"name":"Ann","age":03}',
      '{"name":"Ann","age":1.5}',
      '{ "name":"Ann","age":3}',
      '{"name":"Ann","age":3}x',
    ],
  },
  {
    name: 'enums, const and anyOf',
    schema: {
      type: 'object',
      properties: {
        color: { enum: ['red', 'green', 'reddish'] },
        kind: { const: 'k' },
        v: { anyOf: [{ type: 'null' }, { type: 'boolean' }, { type: 'array', items: { type: 'number' } }] },
      },
      required: ['color', 'kind', 'v'],
      additionalProperties: false,
    },
    valid: ['{"color":"red","kind":"k","v":null}', '{"color":"reddish","kind":"k","v":[1,2.5,-0.5e+3]}', '{"color":"green","kind":"k","v":false}'],
    invalid: ['{"color":"blue","kind":"k","v":null}', '{"color":"red","kind":"j","v":null}', '{"color":"red","kind":"k","v":"x"}'],
  },
  {
    name: 'arrays with minItems and maxItems',
    schema: { type: 'array', items: { type: 'integer' }, minItems: 2, maxItems: 3 },
    valid: ['[1,2]', '[1, 2, 3]'],
    invalid: ['[]', '[1]', '[1,2,3,4]', '[1,]'],
  },
  {
    name: 'numbers with signs, fractions and exponents',
    schema: { type: 'array', items: { type: 'number' } },
    valid: ['[0,-0,1.25,-3e7,4E-2,5.0e+10,123456789012345]'],
    invalid: ['[01]', '[1.]', '[.5]', '[+1]', '[1e]', '[1e123]', '[1234567890123456]', '[NaN]'],
  },
  {
    name: 'strings: escapes, unicode, lengths',
    schema: {
      type: 'object',
      properties: { s: { type: 'string' }, t: { type: 'string', minLength: 2, maxLength: 3 } },
      required: ['s', 't'],
      additionalProperties: false,
    },
    valid: ['{"s":"a\\"b\\\\c\\n\\u00e9é😀","t":"ab"}', '{"s":"","t":"é😀x"}'],
    invalid: ['{"s":"a\nb","t":"ab"}', '{"s":"\\x","t":"ab"}', '{"s":"","t":"a"}', '{"s":"","t":"abcd"}', '{"s":"\\u00g0","t":"ab"}'],
  },
  {
    name: 'recursion through $ref and $defs',
    schema: {
      $ref: '#/$defs/node',
      $defs: {
        node: {
          type: 'object',
          properties: { v: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/node' } } },
          required: ['v', 'kids'],
          additionalProperties: false,
        },
      },
    },
    valid: ['{"v":1,"kids":[]}', '{"v":1,"kids":[{"v":2,"kids":[{"v":3,"kids":[]}]}]}'],
    invalid: ['{"v":1}', '{"v":1,"kids":[{}]}'],
  },
  {
    name: 'type lists and nullable',
    schema: {
      type: 'object',
      properties: { a: { type: ['string', 'null'] }, b: { type: 'integer', nullable: true, minimum: 0 } },
      required: ['a', 'b'],
      additionalProperties: false,
    },
    valid: ['{"a":null,"b":null}', '{"a":"x","b":7}'],
    invalid: ['{"a":1,"b":null}', '{"a":null,"b":-1}'],
  },
];

for (const c of SUITE) {
  t.test(`schema suite: ${c.name}: valid documents are reachable, invalid ones are masked`, async () => {
    const a = new GrammarAutomaton(grammarFromJsonSchema(c.schema), trie);
    const validate = ajv.compile(c.schema);
    for (const doc of c.valid) {
      assert.ok(validate(JSON.parse(doc)), `test data: ${doc} should be valid`);
      assert.ok(accepts(a, doc), `should accept ${doc}`);
    }
    for (const doc of c.invalid) assert.ok(!accepts(a, doc), `should refuse ${doc}`);
  });

  t.test(`schema suite: ${c.name}: every sampled document parses and validates`, async () => {
    const a = new GrammarAutomaton(grammarFromJsonSchema(c.schema), trie);
    const validate = ajv.compile(c.schema);
    const rng = Xoshiro128.fromSeed(7);
    for (let i = 0; i < 60; i++) {
      const { text, finished } = sample(a, rng, 120);
      assert.ok(finished, `sample ${i} ended complete: ${text}`);
      const value: unknown = JSON.parse(text);
      assert.ok(validate(value), `sample ${i} validates: ${text} ${JSON.stringify(validate.errors)}`);
    }
  });
}

t.test('json_object: any object, nested values, nothing after it', async () => {
  const a = new GrammarAutomaton(grammarForJsonObject(), trie);
  for (const doc of ['{}', '{"a":[1,{"b":null}],"c":"d"}', '{"x": {"y": [true, false, -1.5e-3, "s"]}}']) assert.ok(accepts(a, doc), doc);
  for (const doc of ['[]', '"s"', '{"a"}', '{"a":1,}', '{}{}', '{} ']) assert.ok(!accepts(a, doc), doc);
  const rng = Xoshiro128.fromSeed(3);
  for (let i = 0; i < 40; i++) {
    const { text, finished } = sample(a, rng, 80);
    assert.ok(finished, text);
    const value: unknown = JSON.parse(text);
    assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), text);
  }
});

t.test('a tight token budget still ends in a complete document', async () => {
  const schema = {
    type: 'object',
    properties: { s: { type: 'string' }, n: { type: 'array', items: { type: 'number' } } },
    required: ['s', 'n'],
    additionalProperties: false,
  };
  const a = new GrammarAutomaton(grammarFromJsonSchema(schema), trie);
  const shortest = '{"s":"","n":[]}'.length;
  const validate = ajv.compile(schema);
  const rng = Xoshiro128.fromSeed(11);
  for (const budget of [shortest, shortest + 1, shortest + 5, 30]) {
    for (let i = 0; i < 20; i++) {
      const { text, finished } = sample(a, rng, budget);
      assert.ok(finished, `budget ${budget}: ${text}`);
      assert.ok(validate(JSON.parse(text)), text);
    }
  }
});

t.test('EOS is allowed only where the document is complete; a finished document ends by itself', async () => {
  const a = new GrammarAutomaton(grammarFromJsonSchema({ type: 'integer' }), trie);
  const m = new GrammarMatcher(a, stopIds);
  const work = new Float32Array(VOCAB);
  m.apply(work, 10);
  assert.equal(work[EOS], -Infinity, 'no EOS before any digit');
  m.accept('1'.charCodeAt(0));
  work.fill(0);
  m.apply(work, 10);
  assert.equal(work[EOS], 0, 'EOS after a digit: 1 is a complete integer');
  assert.equal(work['2'.charCodeAt(0)], 0, 'but more digits are allowed too');
  assert.equal(m.finished, false);
  const o = new GrammarMatcher(new GrammarAutomaton(grammarFromJsonSchema({ type: 'boolean' }), trie), stopIds);
  o.accept(256 + PIECES.indexOf('true'));
  assert.equal(o.finished, true);
});

t.test('masks are cached per state and states are shared: a string body is one state however long', async () => {
  const a = new GrammarAutomaton(grammarFromJsonSchema({ type: 'string' }), trie);
  let s = a.step(a.initial, 0x22);
  const inside = s;
  for (const b of Buffer.from('a long string body with many characters')) s = a.step(s, b);
  assert.equal(s, inside);
  assert.equal(a.mask(s, Infinity), a.mask(inside, Infinity));
});

t.test('the grammar builder refuses left recursion and dangling references', async () => {
  const b = new GrammarBuilder();
  const root = b.reserve();
  b.define(root, [[ref(root), ch('a')], [ch('b')]]);
  assert.throws(() => b.build(root), /left-recursive/);
  const c = new GrammarBuilder();
  c.define(c.reserve(), [[ref(5)]]);
  assert.throws(() => c.build(0), /missing rule/);
  const d = new GrammarBuilder();
  const r = d.reserve();
  d.define(r, [[...bytesOf('x'), set(0x30, 0x39)]]);
  const a = new GrammarAutomaton(d.build(r), trie);
  assert.ok(accepts(a, 'x5'));
  assert.ok(!accepts(a, 'x'));
});

t.test('unsupported schema features are errors naming their path', async () => {
  const cases: [object, RegExp][] = [
    [{ type: 'string', pattern: '^a' }, /'pattern'.*at pattern/],
    [{ type: 'object', properties: { d: { type: 'string', format: 'date' } } }, /'format'.*properties\.d\.format/],
    [{ type: 'integer', minimum: 3 }, /minimum/],
    [{ oneOf: [{ type: 'string' }] }, /oneOf/],
    [{ $ref: 'http://example.com/s.json' }, /local references/],
    [{ $ref: '#/$defs/missing' }, /does not resolve/],
    [{ type: 'object', properties: {}, required: ['x'] }, /required property 'x'/],
    [{ type: 'array', maxItems: 100000 }, /counts above/],
    [{ type: 'date' }, /unknown type/],
  ];
  for (const [schema, message] of cases) {
    assert.throws(
      () => grammarFromJsonSchema(schema),
      (err: unknown) => err instanceof SchemaError && message.test(err.message),
      JSON.stringify(schema),
    );
  }
});
