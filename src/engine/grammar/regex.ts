/**
 * Regular expression -> byte grammar (capserve's `guided_regex` /
 * `structured_outputs.regex`, as vLLM takes them). The whole output must
 * match (full-match semantics, as Outlines and vLLM apply them; a leading `^`
 * and a trailing `$` are allowed and mean the same).
 *
 * Syntax (the common core of Python `re` and JavaScript): literals, `.` (any
 * character but newline), classes `[a-z]`, `[^...]`, escapes `\d \w \s` and
 * their negations (ASCII meanings), `\n \r \t \f \v \0 \xHH \uHHHH \u{H...}`,
 * escaped punctuation; groups `( )`, `(?: )`, `(?P<name> )`, `(?<name> )`;
 * alternation `|`; quantifiers `* + ? {m} {m,} {m,n}`, lazy ones (`*?`: same
 * language). Refused with the position: backreferences, lookaround, word
 * boundaries, inline flags, possessive quantifiers, anchors in the middle.
 */
import type { Grammar } from './grammar.js';
import { compilePattern, EMPTY, MAX_CODE_POINT, MAX_NESTING, negateRanges, normalizeRanges, PatternError, type PatternNode } from './pattern.js';

const DIGIT = [0x30, 0x39];
const WORD = normalizeRanges([0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a]);
const SPACE = normalizeRanges([0x09, 0x0d, 0x20, 0x20]);
const NOT_NEWLINE = negateRanges([0x0a, 0x0a]);
const SIMPLE_ESCAPES: Record<string, number> = { n: 0x0a, r: 0x0d, t: 0x09, f: 0x0c, v: 0x0b, '0': 0x00, a: 0x07 };

/** Parses `source` and compiles it; throws PatternError (with the offset) for what it cannot take. */
export function grammarFromRegex(source: string): Grammar {
  return compilePattern(new Map([['root', parseRegex(source)]]), 'root');
}

export function parseRegex(source: string): PatternNode {
  return new RegexParser(source).parse();
}

class RegexParser {
  private pos = 0;

  constructor(private readonly src: string) {}

  parse(): PatternNode {
    if (this.src.startsWith('^')) this.pos = 1;
    const node = this.alternation(0);
    if (this.pos < this.src.length) {
      throw new PatternError(this.pos, this.peek() === ')' ? "unbalanced ')'" : `unexpected '${this.peek()}'`);
    }
    return node;
  }

  private peek(): string {
    return this.src[this.pos] ?? '';
  }

  private alternation(depth: number): PatternNode {
    const items = [this.sequence(depth)];
    while (this.peek() === '|') {
      this.pos++;
      items.push(this.sequence(depth));
    }
    return items.length === 1 ? (items[0] ?? EMPTY) : { kind: 'alt', items };
  }

  private sequence(depth: number): PatternNode {
    const items: PatternNode[] = [];
    while (this.pos < this.src.length) {
      const c = this.peek();
      if (c === '|' || (c === ')' && depth > 0)) break;
      if (c === ')') throw new PatternError(this.pos, "unbalanced ')'");
      if (c === '$') {
        // Only at the very end (or before a closing alternative of the top level).
        if (this.pos === this.src.length - 1) {
          this.pos++;
          break;
        }
        throw new PatternError(this.pos, "'$' is supported only at the end of the pattern (the whole output must match)");
      }
      if (c === '^') throw new PatternError(this.pos, "'^' is supported only at the start of the pattern (the whole output must match)");
      items.push(this.quantified(this.atom(depth)));
    }
    return items.length === 1 ? (items[0] ?? EMPTY) : { kind: 'seq', items };
  }

  private quantified(atom: PatternNode): PatternNode {
    let node = atom;
    for (;;) {
      const at = this.pos;
      const c = this.peek();
      let min: number;
      let max: number | null;
      if (c === '*') [min, max] = [0, null];
      else if (c === '+') [min, max] = [1, null];
      else if (c === '?') [min, max] = [0, 1];
      else if (c === '{') {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.pos));
        if (m === null) return node; // A literal '{' follows (Python's reading); atom() takes it next.
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === '' || m[3] === undefined ? null : Number(m[3]);
        this.pos += m[0].length - 1;
      } else return node;
      this.pos++;
      if (node.kind === 'repeat' && node !== atom) throw new PatternError(at, 'multiple repeat');
      if (this.peek() === '?') this.pos++;
      else if (this.peek() === '+') throw new PatternError(this.pos, 'possessive quantifiers are not supported');
      node = { kind: 'repeat', item: node, min, max, at };
    }
  }

  private atom(depth: number): PatternNode {
    const at = this.pos;
    const c = this.peek();
    if (c === '*' || c === '+' || c === '?') throw new PatternError(at, 'nothing to repeat');
    if (c === '(') return this.group(depth);
    if (c === '[') return this.charClass();
    if (c === '.') {
      this.pos++;
      return { kind: 'class', ranges: NOT_NEWLINE };
    }
    if (c === '\\') {
      const e = this.escape(false);
      return typeof e === 'number' ? { kind: 'literal', text: String.fromCodePoint(e) } : { kind: 'class', ranges: e };
    }
    const cp = this.src.codePointAt(this.pos) ?? 0;
    this.pos += cp > 0xffff ? 2 : 1;
    return { kind: 'literal', text: String.fromCodePoint(cp) };
  }

  private group(depth: number): PatternNode {
    const at = this.pos;
    if (depth >= MAX_NESTING) throw new PatternError(at, `groups nested deeper than ${MAX_NESTING} are not supported`);
    this.pos++;
    if (this.peek() === '?') {
      const rest = this.src.slice(this.pos);
      const named = /^\?P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(rest);
      if (rest.startsWith('?:')) this.pos += 2;
      else if (named !== null) this.pos += named[0].length;
      else if (/^\?(=|!|<=|<!)/.test(rest)) throw new PatternError(at, 'lookaround assertions are not supported');
      else if (rest.startsWith('?P=')) throw new PatternError(at, 'backreferences are not supported');
      else throw new PatternError(at, 'inline flags and other (? groups are not supported');
    }
    const inner = this.alternation(depth + 1);
    if (this.peek() !== ')') throw new PatternError(at, "missing ')': unterminated group");
    this.pos++;
    return inner;
  }

  /** After a backslash: a code point, or class ranges for \d \w \s and negations. */
  private escape(inClass: boolean): number | number[] {
    const at = this.pos;
    this.pos++;
    const c = this.peek();
    if (c === '') throw new PatternError(at, 'a trailing backslash escapes nothing');
    this.pos++;
    switch (c) {
      case 'd':
        return DIGIT;
      case 'D':
        return negateRanges(DIGIT);
      case 'w':
        return WORD;
      case 'W':
        return negateRanges(WORD);
      case 's':
        return SPACE;
      case 'S':
        return negateRanges(SPACE);
      case 'x': {
        const m = /^[0-9A-Fa-f]{2}/.exec(this.src.slice(this.pos));
        if (m === null) throw new PatternError(at, '\\x needs two hex digits');
        this.pos += 2;
        return parseInt(m[0], 16);
      }
      case 'u': {
        const m = /^(?:([0-9A-Fa-f]{4})|\{([0-9A-Fa-f]{1,6})\})/.exec(this.src.slice(this.pos));
        if (m === null) throw new PatternError(at, '\\u needs four hex digits or {hex}');
        this.pos += m[0].length;
        const cp = parseInt(m[1] ?? m[2] ?? '0', 16);
        if (cp > MAX_CODE_POINT || (cp >= 0xd800 && cp <= 0xdfff)) throw new PatternError(at, 'the escape is not a Unicode scalar value');
        return cp;
      }
      case 'b':
        if (inClass) return 0x08;
        throw new PatternError(at, 'word boundaries (\\b) are not supported');
      case 'B':
      case 'A':
      case 'Z':
      case 'z':
      case 'G':
        throw new PatternError(at, `the assertion \\${c} is not supported`);
    }
    const simple = SIMPLE_ESCAPES[c];
    if (simple !== undefined && !(c === '0' && /[0-9]/.test(this.peek()))) return simple;
    if (/[1-9]/.test(c) || c === 'k') throw new PatternError(at, 'backreferences are not supported');
    if (/[A-Za-z0-9]/.test(c)) throw new PatternError(at, `unknown escape \\${c}`);
    const cp = this.src.codePointAt(this.pos - 1) ?? 0;
    if (cp > 0xffff) this.pos++;
    return cp;
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
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === '') throw new PatternError(at, "missing ']': unterminated character class");
      if (c === ']' && !first) {
        this.pos++;
        break;
      }
      first = false;
      const lo = this.classAtom();
      if (typeof lo !== 'number') {
        ranges.push(...lo);
        continue;
      }
      if (this.peek() === '-' && this.src[this.pos + 1] !== ']' && this.pos + 1 < this.src.length) {
        const dash = this.pos;
        this.pos++;
        const hi = this.classAtom();
        if (typeof hi !== 'number') throw new PatternError(dash, 'a range cannot end in a class escape');
        if (hi < lo) throw new PatternError(dash, 'bad character range (end before start)');
        ranges.push(lo, hi);
      } else ranges.push(lo, lo);
    }
    const set = normalizeRanges(ranges);
    const out = negate ? negateRanges(set) : set;
    if (out.length === 0) throw new PatternError(at, 'the character class matches no character');
    return { kind: 'class', ranges: out };
  }

  private classAtom(): number | number[] {
    if (this.peek() === '\\') return this.escape(true);
    const cp = this.src.codePointAt(this.pos) ?? 0;
    this.pos += cp > 0xffff ? 2 : 1;
    return cp;
  }
}
