/**
 * GBNF (llama.cpp's grammar format) -> byte grammar: capserve's
 * `guided_grammar` / `structured_outputs.grammar`. The start rule is `root`.
 *
 *   rule   ::= name "::=" alternates (end of line)
 *   alternates: sequences separated by `|` (a line may end after `|`; a line
 *     starting with `|` continues the rule too)
 *   items: "literal" (escapes \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH),
 *     [class] / [^class] with ranges (code points, as llama.cpp's are), `.`
 *     (any character), a rule name, ( group ) over several lines; postfix
 *     `*` `+` `?` `{m}` `{m,}` `{m,n}`; `#` comments to the end of the line.
 *
 * Rules may be recursive, except left-recursive (the automaton needs every
 * cycle to consume a character; llama.cpp refuses them too): the error names
 * the rule. Other errors carry the offset (the server reports line and column).
 */
import type { Grammar } from './grammar.js';
import { compilePattern, EMPTY, MAX_CODE_POINT, MAX_NESTING, negateRanges, normalizeRanges, PatternError, type PatternNode } from './pattern.js';

export function grammarFromGbnf(source: string): Grammar {
  const rules = parseGbnf(source);
  if (!rules.has('root')) throw new PatternError(0, "the grammar has no 'root' rule (the start symbol)");
  return compilePattern(rules, 'root');
}

/** 1-based line and column of a UTF-16 offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const lines = before.split('\n');
  return { line: lines.length, column: (lines[lines.length - 1]?.length ?? 0) + 1 };
}

const NAME = /^[A-Za-z0-9_-]+/;
const ESCAPES: Record<string, number> = { n: 0x0a, r: 0x0d, t: 0x09, '\\': 0x5c, '"': 0x22, '[': 0x5b, ']': 0x5d, '/': 0x2f, '-': 0x2d };

export function parseGbnf(source: string): Map<string, PatternNode> {
  return new GbnfParser(source).parse();
}

class GbnfParser {
  private pos = 0;
  private depth = 0;
  private readonly rules = new Map<string, PatternNode>();

  constructor(private readonly src: string) {}

  parse(): Map<string, PatternNode> {
    this.space(true);
    while (this.pos < this.src.length) {
      this.rule();
      this.space(true);
    }
    if (this.rules.size === 0) throw new PatternError(0, 'the grammar defines no rule');
    return this.rules;
  }

  private peek(k = 0): string {
    return this.src[this.pos + k] ?? '';
  }

  /** Skips blanks and comments; newlines too when `newlines`. */
  private space(newlines: boolean): void {
    while (this.pos < this.src.length) {
      const c = this.peek();
      if (c === ' ' || c === '\t' || ((c === '\n' || c === '\r') && newlines)) this.pos++;
      else if (c === '#') {
        while (this.pos < this.src.length && this.peek() !== '\n') this.pos++;
      } else break;
    }
  }

  private rule(): void {
    const at = this.pos;
    const m = NAME.exec(this.src.slice(this.pos));
    if (m === null) throw new PatternError(this.pos, `expected a rule name, found '${this.peek()}'`);
    const name = m[0];
    this.pos += name.length;
    this.space(false);
    if (!this.src.startsWith('::=', this.pos)) throw new PatternError(this.pos, `expected '::=' after the rule name '${name}'`);
    this.pos += 3;
    this.space(true);
    if (this.rules.has(name)) throw new PatternError(at, `the rule '${name}' is defined twice`);
    const body = this.alternates(false);
    this.rules.set(name, body);
    const c = this.peek();
    if (c !== '' && c !== '\n' && c !== '\r') throw new PatternError(this.pos, `expected the end of the line after rule '${name}', found '${c}'`);
  }

  private alternates(nested: boolean): PatternNode {
    const items = [this.sequence(nested)];
    for (;;) {
      if (this.peek() === '|') {
        this.pos++;
        this.space(true);
        items.push(this.sequence(nested));
        continue;
      }
      // A continuation line starting with '|'.
      if (!nested && (this.peek() === '\n' || this.peek() === '\r')) {
        const save = this.pos;
        this.space(true);
        if (this.peek() === '|') continue;
        this.pos = save;
      }
      break;
    }
    return items.length === 1 ? (items[0] ?? EMPTY) : { kind: 'alt', items };
  }

  private sequence(nested: boolean): PatternNode {
    const items: PatternNode[] = [];
    for (;;) {
      const c = this.peek();
      const at = this.pos;
      if (c === '"') items.push(this.literal());
      else if (c === '[') items.push(this.charClass());
      else if (c === '.') {
        this.pos++;
        items.push({ kind: 'class', ranges: negateRanges([]) });
      } else if (c === '(') {
        if (++this.depth > MAX_NESTING) throw new PatternError(at, `groups nested deeper than ${MAX_NESTING} are not supported`);
        this.pos++;
        this.space(true);
        const inner = this.alternates(true);
        if (this.peek() !== ')') throw new PatternError(at, "missing ')': unterminated group");
        this.pos++;
        this.depth--;
        items.push(inner);
      } else if (c === '*' || c === '+' || c === '?' || c === '{') {
        const last = items.pop();
        if (last === undefined) throw new PatternError(at, `'${c}' follows nothing it could repeat`);
        items.push(this.postfix(last));
      } else {
        const m = NAME.exec(this.src.slice(this.pos));
        if (m === null) break;
        this.pos += m[0].length;
        items.push({ kind: 'ref', name: m[0], at });
      }
      this.space(nested);
    }
    return items.length === 1 ? (items[0] ?? EMPTY) : { kind: 'seq', items };
  }

  private postfix(item: PatternNode): PatternNode {
    const at = this.pos;
    const c = this.peek();
    this.pos++;
    if (c === '*') return { kind: 'repeat', item, min: 0, max: null, at };
    if (c === '+') return { kind: 'repeat', item, min: 1, max: null, at };
    if (c === '?') return { kind: 'repeat', item, min: 0, max: 1, at };
    const m = /^\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}/.exec(this.src.slice(this.pos));
    if (m === null) throw new PatternError(at, "expected '{m}', '{m,}' or '{m,n}'");
    this.pos += m[0].length;
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' || m[3] === undefined ? null : Number(m[3]);
    return { kind: 'repeat', item, min, max, at };
  }

  private literal(): PatternNode {
    const at = this.pos;
    this.pos++;
    let text = '';
    for (;;) {
      const c = this.peek();
      if (c === '' || c === '\n') throw new PatternError(at, 'unterminated string literal');
      if (c === '"') {
        this.pos++;
        return { kind: 'literal', text };
      }
      text += String.fromCodePoint(this.char());
    }
  }

  /** One character of a literal or class, escapes decoded. */
  private char(): number {
    const at = this.pos;
    if (this.peek() !== '\\') {
      const cp = this.src.codePointAt(this.pos) ?? 0;
      this.pos += cp > 0xffff ? 2 : 1;
      return cp;
    }
    const e = this.peek(1);
    this.pos += 2;
    const hex = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
    if (hex > 0) {
      const digits = this.src.slice(this.pos, this.pos + hex);
      if (!new RegExp(`^[0-9A-Fa-f]{${hex}}$`).test(digits)) throw new PatternError(at, `\\${e} needs ${hex} hex digits`);
      this.pos += hex;
      const cp = parseInt(digits, 16);
      if (cp > MAX_CODE_POINT || (cp >= 0xd800 && cp <= 0xdfff)) throw new PatternError(at, 'the escape is not a Unicode scalar value');
      return cp;
    }
    const simple = ESCAPES[e];
    if (simple === undefined) throw new PatternError(at, `unknown escape '\\${e}'`);
    return simple;
  }

  private charClass(): PatternNode {
    const at = this.pos;
    this.pos++;
    let negate = false;
    if (this.peek() === '^') {
      negate = true;
      this.pos++;
    }
    const ranges: number[] = [];
    for (;;) {
      const c = this.peek();
      if (c === '' || c === '\n') throw new PatternError(at, "missing ']': unterminated character class");
      if (c === ']') {
        this.pos++;
        break;
      }
      const lo = this.char();
      if (this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== '') {
        const dash = this.pos;
        this.pos++;
        const hi = this.char();
        if (hi < lo) throw new PatternError(dash, 'bad character range (end before start)');
        ranges.push(lo, hi);
      } else ranges.push(lo, lo);
    }
    const set = normalizeRanges(ranges);
    const out = negate ? negateRanges(set) : set;
    if (out.length === 0) throw new PatternError(at, 'the character class matches no character');
    return { kind: 'class', ranges: out };
  }
}
