import t from 'tap';
import assert from 'node:assert/strict';
import { GrammarAutomaton } from '../../../../src/engine/grammar/automaton.js';
import { grammarFromGbnf, lineColumn } from '../../../../src/engine/grammar/gbnf.js';
import { PatternError, utf8Sequences } from '../../../../src/engine/grammar/pattern.js';
import { grammarFromRegex } from '../../../../src/engine/grammar/regex.js';
import { GrammarMatcher } from '../../../../src/engine/grammar/matcher.js';
import { TokenTrie } from '../../../../src/engine/grammar/token-trie.js';
import { Xoshiro128 } from '../../../../src/engine/sampling/rng.js';
import { accepts } from '../../../helpers/grammar.js';

/** Every single byte, some multi-byte pieces, and EOS (no bytes). */
const PIECES = ['cat', 'dog', 'ss', '55', '-1', '12', 'ab', '{"', '":', '", "', '"}', 'true', 'null', ' ', '\n', 'é', '😀', '+2', '(1', '))', 'e-'];
const EOS = 256 + PIECES.length;
const VOCAB = EOS + 1;
const tokenBytes: (Uint8Array | null)[] = [
  ...Array.from({ length: 256 }, (_, b) => Uint8Array.of(b)),
  ...PIECES.map((p) => Uint8Array.from(Buffer.from(p, 'utf8'))),
  null,
];
const trie = new TokenTrie(tokenBytes, VOCAB);
const stopIds = new Set([EOS]);

/** A document sampled token by token from the masks, as the engine samples. */
function sample(a: GrammarAutomaton, rng: Xoshiro128, maxTokens: number): { text: string; finished: boolean } {
  const m = new GrammarMatcher(a, stopIds);
  const bytes: number[] = [];
  for (let step = 0; step < maxTokens; step++) {
    if (m.finished) break;
    const work = new Float32Array(VOCAB);
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

/** Random strings over an alphabet, for comparing the automaton with JavaScript's RegExp. */
function* randomStrings(alphabet: readonly string[], count: number, seed: number): Generator<string> {
  const rng = Xoshiro128.fromSeed(seed);
  for (let i = 0; i < count; i++) {
    const len = Math.floor(rng.nextFloat() * 9);
    let s = '';
    for (let j = 0; j < len; j++) s += alphabet[Math.floor(rng.nextFloat() * alphabet.length)] ?? '';
    yield s;
  }
}

const REGEXES: { pattern: string; valid: string[]; invalid: string[]; alphabet: string[] }[] = [
  { pattern: '\\d{3}-\\d{4}', valid: ['555-1234'], invalid: ['55-1234', '5555-1234', '555-12345', '555_1234'], alphabet: ['5', '1', '-', 'a'] },
  { pattern: '(cat|dog)s?', valid: ['cat', 'dogs'], invalid: ['cats ', 'cow', 'catdog', ''], alphabet: ['c', 'a', 't', 'd', 'o', 'g', 's'] },
  { pattern: '[A-Z][a-z]*( [A-Z][a-z]*)*', valid: ['Ann', 'Ann Lee', 'A B'], invalid: ['ann', 'Ann ', 'Ann  Lee'], alphabet: ['A', 'b', ' ', 'z'] },
  { pattern: '[^"\\\\]+', valid: ['é😀ab', "it's"], invalid: ['"', 'a\\b', ''], alphabet: ['a', '"', '\\', 'é', '😀'] },
  { pattern: '\\w+@\\w+\\.com', valid: ['a_1@x.com'], invalid: ['a@x.co', '@x.com', 'a@x,com'], alphabet: ['a', '@', '.', 'c', 'o', 'm', '_'] },
  { pattern: 'a{2,}b?', valid: ['aa', 'aaab'], invalid: ['a', 'ab', 'aabb'], alphabet: ['a', 'b'] },
  { pattern: '(a?b?)*c', valid: ['c', 'abbac', 'bc'], invalid: ['ca', 'ab'], alphabet: ['a', 'b', 'c'] },
  {
    pattern: '-?(0|[1-9]\\d*)(\\.\\d+)?([eE][+-]?\\d+)?',
    valid: ['0', '-12.5e+3', '7E9'],
    invalid: ['01', '1.', '-', '1e'],
    alphabet: ['-', '0', '1', '.', 'e', '+'],
  },
  { pattern: '^a.c$', valid: ['abc', 'aéc', 'a😀c'], invalid: ['a\nc', 'ac'], alphabet: ['a', 'b', 'c', '\n', 'é'] },
  { pattern: '[\\u00e0-\\u00ff\\d]{1,3}x{0}', valid: ['é', '1ÿ2'], invalid: ['', 'a', 'éééé'], alphabet: ['é', '1', 'a', 'ÿ'] },
  { pattern: '(?:ab|a)(?P<n>c|)d*?', valid: ['abcd', 'a', 'acdd'], invalid: ['b', 'abce'], alphabet: ['a', 'b', 'c', 'd', 'e'] },
];

for (const c of REGEXES) {
  t.test(`regex ${c.pattern}: the automaton's language is RegExp's full match, both ways`, async () => {
    const a = new GrammarAutomaton(grammarFromRegex(c.pattern), trie);
    const body = c.pattern
      .replace(/^\^/, '')
      .replace(/\$$/, '')
      .replace(/\(\?P</g, '(?<');
    const re = new RegExp(`^(?:${body})$`, 'u');
    for (const s of c.valid) assert.ok(accepts(a, s), `should accept ${JSON.stringify(s)}`);
    for (const s of c.invalid) assert.ok(!accepts(a, s), `should refuse ${JSON.stringify(s)}`);
    for (const s of randomStrings(c.alphabet, 400, c.pattern.length)) assert.equal(accepts(a, s), re.test(s), JSON.stringify(s));
    const rng = Xoshiro128.fromSeed(5);
    for (let i = 0; i < 30; i++) {
      const { text, finished } = sample(a, rng, 40);
      assert.ok(finished, `sample ${i} complete: ${JSON.stringify(text)}`);
      assert.ok(re.test(text), `sample ${i} matches: ${JSON.stringify(text)}`);
    }
  });
}

t.test('regex: a wrong prefix is masked at the byte where it goes wrong; EOS only when the match is complete', async () => {
  const a = new GrammarAutomaton(grammarFromRegex('\\d{3}'), trie);
  const m = new GrammarMatcher(a, stopIds);
  const work = new Float32Array(VOCAB);
  m.apply(work, 10);
  assert.equal(work['a'.charCodeAt(0)], -Infinity);
  assert.equal(work[EOS], -Infinity);
  assert.equal(work[256 + PIECES.indexOf('12')], 0, 'a two-digit piece fits');
  assert.equal(work[256 + PIECES.indexOf('55')], 0);
  m.accept(256 + PIECES.indexOf('12'));
  work.fill(0);
  m.apply(work, 10);
  assert.equal(work[256 + PIECES.indexOf('55')], -Infinity, 'a fourth digit would not match');
  assert.equal(work['7'.charCodeAt(0)], 0);
  m.accept('7'.charCodeAt(0));
  assert.equal(m.finished, true);
});

t.test('regex errors: what is refused, at which offset', async () => {
  const cases: [string, number, RegExp][] = [
    ['a(b', 1, /missing '\)'/],
    ['ab)', 2, /unbalanced/],
    ['(?=a)b', 0, /lookaround/],
    ['a**', 2, /multiple repeat/],
    ['*a', 0, /nothing to repeat/],
    ['(a)\\1', 3, /backreference/],
    ['[z-a]', 2, /bad character range/],
    ['x{5,2}', 1, /below its minimum/],
    ['a{2000}', 1, /above 1000/],
    ['a$b', 1, /'\$'/],
    ['\\bword', 0, /word boundaries/],
    ['[abc', 0, /unterminated character class/],
    ['(?i)a', 0, /inline flags/],
  ];
  for (const [pattern, offset, message] of cases) {
    assert.throws(
      () => grammarFromRegex(pattern),
      (err: unknown) => err instanceof PatternError && err.offset === offset && message.test(err.reason),
      `${pattern} -> offset ${offset} ${String(message)}`,
    );
  }
});

t.test('utf8Sequences: every code point of a range encodes to one of its sequences, nothing else does', async () => {
  const rng = Xoshiro128.fromSeed(1);
  for (const [lo, hi] of [
    [0, 0x10ffff],
    [0x7f, 0x800],
    [0xd000, 0xe100],
    [0x10000, 0x10fff],
  ] as const) {
    const seqs = utf8Sequences(lo, hi);
    const matches = (cp: number): boolean => {
      const bytes = Buffer.from(String.fromCodePoint(cp), 'utf8');
      return seqs.some((s) => s.length === bytes.length && s.every(([a, b], i) => (bytes[i] ?? -1) >= (a ?? 0) && (bytes[i] ?? -1) <= (b ?? 0)));
    };
    for (let i = 0; i < 2000; i++) {
      const cp = Math.floor(rng.nextFloat() * 0x110000);
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      assert.equal(matches(cp), cp >= lo && cp <= hi, `U+${cp.toString(16)} in [${lo.toString(16)}, ${hi.toString(16)}]`);
    }
  }
});

/** A JSON grammar in llama.cpp's GBNF style (written for this test): every sample must be JSON. */
const JSON_GBNF = `# JSON, with optional whitespace
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\\"" (
    [^"\\\\\\x7F\\x00-\\x1F] |
    "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,2})? ws
ws ::= | " " | "\\n" [ \\t]{0,20}
`;

t.test('GBNF: a JSON grammar in llama.cpp style accepts JSON, refuses the rest, and every sample parses', async () => {
  const a = new GrammarAutomaton(grammarFromGbnf(JSON_GBNF), trie);
  for (const doc of ['{}', '{"a": [1, -2.5e3, true, null, "x\\n\\u00e9"]}', '{ "k" : {"n":{}} }\n  ']) assert.ok(accepts(a, doc), doc);
  for (const doc of ['[]', '{"a"}', '{"a":01}', '{"a":1,}', '{"a":"\\x"}', '{}x']) assert.ok(!accepts(a, doc), doc);
  const rng = Xoshiro128.fromSeed(9);
  for (let i = 0; i < 50; i++) {
    const { text, finished } = sample(a, rng, 60);
    assert.ok(finished, `sample ${i} complete: ${JSON.stringify(text)}`);
    const value: unknown = JSON.parse(text);
    assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), text);
  }
});

t.test('GBNF: recursion, groups, repetition and classes, against a RegExp where the language is regular', async () => {
  const a = new GrammarAutomaton(grammarFromGbnf('root ::= animal ("," " "? animal){0,2}\nanimal ::= ("cat" | "dog") "s"?\n  | [A-Z] [a-z]+'), trie);
  const re = /^(?:(?:cat|dog)s?|[A-Z][a-z]+)(?:, ?(?:(?:cat|dog)s?|[A-Z][a-z]+)){0,2}$/;
  for (const s of randomStrings(['cat', 'dog', 's', ',', ' ', 'Rex', 'x', 'A'], 600, 4)) assert.equal(accepts(a, s), re.test(s), JSON.stringify(s));
  const expr = new GrammarAutomaton(grammarFromGbnf('root ::= expr\nexpr ::= term (("+" | "-") term)*\nterm ::= [0-9]+ | "(" expr ")"'), trie);
  for (const s of ['1', '1+2', '(1-(2+3))-4', '((12))']) assert.ok(accepts(expr, s), s);
  for (const s of ['', '1+', '(1', '1)', '()', '1++2']) assert.ok(!accepts(expr, s), s);
  const rng = Xoshiro128.fromSeed(2);
  for (let i = 0; i < 30; i++) {
    const { text, finished } = sample(expr, rng, 30);
    assert.ok(finished, text);
    // Balanced parentheses and a valid arithmetic expression: JavaScript evaluates it.
    assert.equal(typeof Function(`return (${text});`)(), 'number', text);
  }
});

t.test('GBNF errors: the message names the problem, the offset gives line and column', async () => {
  const cases: [string, number, number, RegExp][] = [
    ['root ::= "a"\nb "x"', 2, 3, /expected '::='/],
    ['root ::= a', 1, 10, /undefined rule 'a'/],
    ['root ::= "abc', 1, 10, /unterminated string/],
    ['root ::= [a-', 1, 10, /unterminated character class/],
    ['x ::= "a"', 1, 1, /no 'root' rule/],
    ['root ::= ("a" | "b"', 1, 10, /missing '\)'/],
    ['root ::= "a" ) "b"', 1, 14, /end of the line/],
    ['root ::= "\\q"', 1, 11, /unknown escape/],
    ['root ::= "a"\nroot ::= "b"', 2, 1, /defined twice/],
    ['root ::= * "a"', 1, 10, /follows nothing/],
  ];
  for (const [source, line, column, message] of cases) {
    assert.throws(
      () => grammarFromGbnf(source),
      (err: unknown) => {
        if (!(err instanceof PatternError)) return false;
        const at = lineColumn(source, err.offset);
        return message.test(err.reason) && (err.offset === 0 && /no 'root'/.test(err.reason) ? true : at.line === line && at.column === column);
      },
      `${JSON.stringify(source)} -> ${line}:${column} ${String(message)}`,
    );
  }
  assert.throws(() => grammarFromGbnf('root ::= expr\nexpr ::= expr "+" "1" | "1"'), /rule 'expr' is left-recursive/);
});

t.test('nesting: 255 nested nullable stars compile in linear size; deeper groups are a clear error', async () => {
  // Compile size only at 255 levels: the automaton's parser states grow with nesting of nullable loops, so it runs on 6.
  const g = grammarFromRegex(`${'('.repeat(255)}a?${')*'.repeat(255)}b`);
  assert.ok(g.rules.length < 5000, `${g.rules.length} rules`);
  const a = new GrammarAutomaton(grammarFromRegex(`${'('.repeat(6)}a?${')*'.repeat(6)}b`), trie);
  for (const s of ['b', 'ab', 'aaab']) assert.ok(accepts(a, s), s);
  assert.ok(!accepts(a, 'ba'));
  assert.ok(grammarFromGbnf(`root ::= ${'('.repeat(255)}"a"?${')*'.repeat(255)} "b"`).rules.length < 5000);
  assert.throws(() => grammarFromRegex(`${'('.repeat(300)}a${')'.repeat(300)}`), /nested deeper than 256/);
  assert.throws(() => grammarFromGbnf(`root ::= ${'('.repeat(300)}"a"${')'.repeat(300)}`), /nested deeper than 256/);
});

t.test('a pathological nesting fails fast with a clear error instead of stalling the worker', async () => {
  // 255 nested nullable loops reach the same parser positions along exponentially many paths;
  // each byte's transition visits a (position, stack) pair once and is capped.
  const deep = new GrammarAutomaton(grammarFromRegex(`${'('.repeat(255)}a?${')*'.repeat(255)}b`), trie);
  assert.throws(() => accepts(deep, 'aab'), /parser moves for one byte/);
});
