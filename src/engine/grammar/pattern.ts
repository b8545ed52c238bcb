/**
 * The text-pattern front ends' shared middle: regex.ts and gbnf.ts parse into
 * this small AST (code-point classes, literals, sequences, alternatives,
 * counted repetition, named rule references), and compilePattern lowers it to
 * the byte grammar (grammar.ts) the JSON Schema path builds, so the same
 * automaton, token trie walk and per-state mask cache serve all of them.
 *
 * Lowering: a code-point class becomes its UTF-8 byte sequences (split at
 * encoding-length and continuation-byte boundaries, surrogates excluded, as
 * regex engines compile Unicode classes to byte automata); x{m,n} is unrolled
 * into m copies and a chain of n-m optional ones, x{m,} into m copies and a
 * right-recursive loop (one parser state however long it runs). A repeated
 * item that can match the empty string is repeated as its non-empty part
 * (x* = (x - ε)*, same language), because the automaton needs grammars
 * without empty cycles. Errors carry the offset into the source text.
 */
import { type Alternative, type Element, GrammarBuilder, type Grammar, bytesOf, ref, set } from './grammar.js';

export type PatternNode =
  | { readonly kind: 'literal'; readonly text: string }
  /** Sorted, disjoint, inclusive code-point [lo, hi] pairs. */
  | { readonly kind: 'class'; readonly ranges: readonly number[] }
  | { readonly kind: 'seq'; readonly items: readonly PatternNode[] }
  | { readonly kind: 'alt'; readonly items: readonly PatternNode[] }
  | { readonly kind: 'repeat'; readonly item: PatternNode; readonly min: number; readonly max: number | null; readonly at: number }
  | { readonly kind: 'ref'; readonly name: string; readonly at: number };

/** A syntax or semantic error at `offset` (UTF-16 index) of the pattern or grammar text. */
export class PatternError extends Error {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'PatternError';
  }
}

/** Repetition bounds above this are refused (the grammar grows linearly with them). */
export const MAX_REPEAT = 1000;
export const MAX_CODE_POINT = 0x10ffff;
/** Group nesting the parsers accept (they recurse per level; the compiler too). */
export const MAX_NESTING = 256;

export const EMPTY: PatternNode = { kind: 'literal', text: '' };

/** Sorts and merges code-point ranges. */
export function normalizeRanges(ranges: readonly number[]): number[] {
  const pairs: [number, number][] = [];
  for (let i = 0; i + 1 < ranges.length; i += 2) pairs.push([ranges[i] ?? 0, ranges[i + 1] ?? 0]);
  pairs.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [lo, hi] of pairs) {
    const last = out.length - 1;
    if (last > 0 && lo <= (out[last] ?? 0) + 1) out[last] = Math.max(out[last] ?? 0, hi);
    else out.push(lo, hi);
  }
  return out;
}

/** The complement of normalized ranges within [0, MAX_CODE_POINT]. */
export function negateRanges(ranges: readonly number[]): number[] {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i + 1 < ranges.length; i += 2) {
    const lo = ranges[i] ?? 0;
    if (lo > next) out.push(next, lo - 1);
    next = (ranges[i + 1] ?? 0) + 1;
  }
  if (next <= MAX_CODE_POINT) out.push(next, MAX_CODE_POINT);
  return out;
}

function encode(cp: number): number[] {
  return Array.from(Buffer.from(String.fromCodePoint(cp), 'utf8'));
}

/** UTF-8 byte-range sequences matching exactly the code points lo..hi (surrogates excluded). */
export function utf8Sequences(lo: number, hi: number, out: number[][][] = []): number[][][] {
  if (lo > hi) return out;
  if (lo <= 0xdfff && hi >= 0xd800) {
    if (lo < 0xd800) utf8Sequences(lo, 0xd7ff, out);
    if (hi > 0xdfff) utf8Sequences(0xe000, hi, out);
    return out;
  }
  for (const max of [0x7f, 0x7ff, 0xffff]) {
    if (lo <= max && max < hi) {
      utf8Sequences(lo, max, out);
      utf8Sequences(max + 1, hi, out);
      return out;
    }
  }
  if (hi <= 0x7f) {
    out.push([[lo, hi]]);
    return out;
  }
  const n = encode(lo).length;
  for (let i = 1; i < n; i++) {
    const m = (1 << (6 * i)) - 1;
    if ((lo & ~m) !== (hi & ~m)) {
      if ((lo & m) !== 0) {
        utf8Sequences(lo, lo | m, out);
        utf8Sequences((lo | m) + 1, hi, out);
        return out;
      }
      if ((hi & m) !== m) {
        utf8Sequences(lo, (hi & ~m) - 1, out);
        utf8Sequences(hi & ~m, hi, out);
        return out;
      }
    }
  }
  const a = encode(lo);
  const b = encode(hi);
  out.push(a.map((x, i) => [x, b[i] ?? x]));
  return out;
}

/**
 * Lowers `rules` (name -> body; a regex is one rule) to a byte grammar whose
 * start symbol is `root`. Throws PatternError for an undefined reference, a
 * repetition bound too large, or a left-recursive rule.
 */
export function compilePattern(rules: ReadonlyMap<string, PatternNode>, root: string): Grammar {
  return new PatternCompiler(rules).compile(root);
}

class PatternCompiler {
  private readonly b = new GrammarBuilder();
  private readonly ids = new Map<string, number>();
  /** Which source rule each builder rule was made for (error messages name it). */
  private readonly owner: string[] = [];
  private current = '';
  private readonly classes = new Map<string, number>();
  private readonly nullable = new Map<string, boolean>();
  private readonly nonEmptyRules = new Map<string, PatternNode | null>();
  // Per node object: a node shared between places (the item of a nullable
  // repeat and its non-empty part) is transformed and compiled once, which
  // keeps nested repeats linear instead of exponential.
  private readonly nonEmptyMemo = new Map<PatternNode, PatternNode | null>();
  private readonly nullableMemo = new Map<PatternNode, boolean>();
  private readonly compiled = new Map<PatternNode, Element[]>();
  private readonly itemRules = new Map<PatternNode, number>();
  private nullableFixed = false;

  constructor(private readonly rules: ReadonlyMap<string, PatternNode>) {}

  compile(root: string): Grammar {
    if (!this.rules.has(root)) throw new PatternError(0, `no rule named '${root}'`);
    this.computeNullable();
    this.nullableFixed = true;
    const start = this.reserve();
    this.current = root;
    this.b.define(start, [[ref(this.ruleId(root, 0))]]);
    try {
      return this.b.build(start);
    } catch (err) {
      const m = err instanceof RangeError ? /rule (\d+) is left-recursive/.exec(err.message) : null;
      if (m !== null) {
        const name = this.owner[Number(m[1])] ?? root;
        throw new PatternError(0, `rule '${name}' is left-recursive (it can reach itself without consuming a character); rewrite it with repetition`);
      }
      throw err;
    }
  }

  private reserve(): number {
    const id = this.b.reserve();
    this.owner[id] = this.current;
    return id;
  }

  private rule(alternatives: readonly Alternative[]): number {
    return this.b.define(this.reserve(), alternatives);
  }

  private ruleId(name: string, at: number): number {
    const known = this.ids.get(name);
    if (known !== undefined) return known;
    const body = this.rules.get(name) ?? this.nonEmptyRules.get(name);
    if (body === undefined || body === null) throw new PatternError(at, `undefined rule '${name}'`);
    const saved = this.current;
    this.current = name.endsWith(NON_EMPTY) ? name.slice(0, -NON_EMPTY.length) : name;
    const id = this.reserve();
    this.ids.set(name, id);
    this.b.define(id, this.alternatives(body));
    this.current = saved;
    return id;
  }

  private alternatives(node: PatternNode): Alternative[] {
    if (node.kind === 'alt') return node.items.map((n) => this.elements(n));
    return [this.elements(node)];
  }

  private elements(node: PatternNode): Element[] {
    if (node.kind !== 'alt' && node.kind !== 'repeat') return this.inline(node);
    let out = this.compiled.get(node);
    if (out === undefined) {
      out = this.inline(node);
      this.compiled.set(node, out);
    }
    return out;
  }

  private inline(node: PatternNode): Element[] {
    switch (node.kind) {
      case 'literal':
        return bytesOf(node.text);
      case 'class':
        return this.classElements(node.ranges);
      case 'seq':
        return node.items.flatMap((n) => this.elements(n));
      case 'alt':
        if (node.items.length === 1 && node.items[0] !== undefined) return this.elements(node.items[0]);
        return [ref(this.rule(this.alternatives(node)))];
      case 'ref':
        return [ref(this.ruleId(node.name, node.at))];
      case 'repeat':
        return this.repeat(node);
    }
  }

  private classElements(ranges: readonly number[]): Element[] {
    const seqs: number[][][] = [];
    for (let i = 0; i + 1 < ranges.length; i += 2) utf8Sequences(ranges[i] ?? 0, ranges[i + 1] ?? 0, seqs);
    const single = seqs.filter((s) => s.length === 1).flatMap((s) => s[0] ?? []);
    const multi = seqs.filter((s) => s.length > 1);
    if (multi.length === 0 && single.length > 0) return [set(...single)];
    const key = ranges.join(',');
    let id = this.classes.get(key);
    if (id === undefined) {
      const alts: Alternative[] = multi.map((s) => s.map(([lo, hi]) => set(lo ?? 0, hi ?? 0)));
      if (single.length > 0) alts.unshift([set(...single)]);
      if (alts.length === 0) throw new PatternError(0, 'a character class matches no character');
      id = this.rule(alts);
      this.classes.set(key, id);
    }
    return [ref(id)];
  }

  private repeat(node: Extract<PatternNode, { kind: 'repeat' }>): Element[] {
    let { item, min } = node;
    const { max } = node;
    if (min > MAX_REPEAT || (max ?? 0) > MAX_REPEAT) throw new PatternError(node.at, `repetition counts above ${MAX_REPEAT} are not supported`);
    if (max !== null && max < min) throw new PatternError(node.at, `the repetition maximum (${max}) is below its minimum (${min})`);
    if (max === 0) return [];
    if (this.isNullable(item)) {
      const part = this.nonEmpty(item);
      if (part === null) return [];
      item = part;
      min = 0;
    }
    let one = this.itemRules.get(item);
    if (one === undefined) {
      one = this.rule(this.alternatives(item));
      this.itemRules.set(item, one);
    }
    const out: Element[] = [];
    for (let k = 0; k < min; k++) out.push(ref(one));
    if (max === null) {
      const loop = this.reserve();
      this.b.define(loop, [[ref(one), ref(loop)], []]);
      out.push(ref(loop));
    } else if (max > min) {
      let next = this.rule([[]]);
      for (let k = min; k < max; k++) next = this.rule([[ref(one), ref(next)], []]);
      out.push(ref(next));
    }
    return out;
  }

  private computeNullable(): void {
    for (const name of this.rules.keys()) this.nullable.set(name, false);
    let changed = true;
    while (changed) {
      changed = false;
      for (const [name, body] of this.rules) {
        if (this.nullable.get(name) !== true && this.isNullable(body)) {
          this.nullable.set(name, true);
          changed = true;
        }
      }
    }
  }

  private isNullable(node: PatternNode): boolean {
    if (!this.nullableFixed) return this.nullableOf(node);
    let known = this.nullableMemo.get(node);
    if (known === undefined) {
      known = this.nullableOf(node);
      this.nullableMemo.set(node, known);
    }
    return known;
  }

  private nullableOf(node: PatternNode): boolean {
    switch (node.kind) {
      case 'literal':
        return node.text === '';
      case 'class':
        return false;
      case 'seq':
        return node.items.every((n) => this.isNullable(n));
      case 'alt':
        return node.items.some((n) => this.isNullable(n));
      case 'repeat':
        return node.min === 0 || this.isNullable(node.item);
      case 'ref':
        return this.nullable.get(node.name.endsWith(NON_EMPTY) ? '' : node.name) === true;
    }
  }

  /** The node's language without the empty string; null when that is empty. */
  private nonEmpty(node: PatternNode): PatternNode | null {
    let known = this.nonEmptyMemo.get(node);
    if (known === undefined) {
      known = this.nonEmptyOf(node);
      this.nonEmptyMemo.set(node, known);
    }
    return known;
  }

  private nonEmptyOf(node: PatternNode): PatternNode | null {
    switch (node.kind) {
      case 'literal':
        return node.text === '' ? null : node;
      case 'class':
        return node;
      case 'seq': {
        const [first, ...rest] = node.items;
        if (first === undefined) return null;
        const tail: PatternNode = { kind: 'seq', items: rest };
        const alts: PatternNode[] = [];
        const a = this.nonEmpty(first);
        if (a !== null) alts.push({ kind: 'seq', items: [a, tail] });
        if (this.isNullable(first)) {
          const b = this.nonEmpty(tail);
          if (b !== null) alts.push(b);
        }
        return alts.length === 0 ? null : alts.length === 1 ? (alts[0] ?? null) : { kind: 'alt', items: alts };
      }
      case 'alt': {
        const alts = node.items.map((n) => this.nonEmpty(n)).filter((n): n is PatternNode => n !== null);
        return alts.length === 0 ? null : { kind: 'alt', items: alts };
      }
      case 'repeat': {
        if (node.max === 0) return null;
        const a = this.nonEmpty(node.item);
        if (a === null) return null;
        return { kind: 'seq', items: [a, { ...node, min: Math.max(0, node.min - 1), max: node.max === null ? null : node.max - 1 }] };
      }
      case 'ref': {
        if (!this.isNullable(node)) return node;
        const name = `${node.name}${NON_EMPTY}`;
        if (!this.nonEmptyRules.has(name)) {
          const body = this.rules.get(node.name);
          if (body === undefined) throw new PatternError(node.at, `undefined rule '${node.name}'`);
          // Placeholder first: the rule may reach itself.
          this.nonEmptyRules.set(name, EMPTY);
          this.nonEmptyRules.set(name, this.nonEmpty(body));
        }
        return this.nonEmptyRules.get(name) === null ? null : { kind: 'ref', name, at: node.at };
      }
    }
  }
}

/** Suffix of the derived rule holding a nullable rule's non-empty part (not a valid rule-name character, so never clashes). */
const NON_EMPTY = '#nonempty';
