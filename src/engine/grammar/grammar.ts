/**
 * A context-free grammar over bytes, as plain data (it crosses the worker
 * boundary by structured clone): rule 0 is the start symbol, each rule is a list
 * of alternatives, each alternative a sequence of byte sets and rule references.
 * This is the shape llama.cpp's GBNF compiles to; JSON Schema (json-schema.ts)
 * and the tool-call formats build grammars with GrammarBuilder, and the engine
 * turns one into a token-level automaton (automaton.ts).
 *
 * Restrictions the automaton relies on: no left recursion and no rule that can
 * derive the empty string through a reference cycle (the builders here never
 * produce either; validateGrammar checks the first).
 */

/** A set of bytes as sorted, disjoint, inclusive [lo, hi] pairs. */
export type ByteRanges = readonly number[];

export type Element = { readonly set: ByteRanges } | { readonly ref: number };
export type Alternative = readonly Element[];
export type Rule = readonly Alternative[];

export interface Grammar {
  readonly rules: readonly Rule[];
}

export class GrammarBuilder {
  private readonly rules: Alternative[][] = [];
  private readonly literals = new Map<string, number>();

  /** Reserves a rule id (for recursion: reference it before defining it). */
  reserve(): number {
    this.rules.push([]);
    return this.rules.length - 1;
  }

  define(id: number, alternatives: readonly Alternative[]): number {
    if (this.rules[id] === undefined) throw new RangeError(`rule ${id} was not reserved`);
    this.rules[id] = [...alternatives];
    return id;
  }

  rule(alternatives: readonly Alternative[]): number {
    return this.define(this.reserve(), alternatives);
  }

  /** A rule matching exactly this text (UTF-8), shared between uses. */
  literal(text: string): number {
    const known = this.literals.get(text);
    if (known !== undefined) return known;
    const id = this.rule([bytesOf(text)]);
    this.literals.set(text, id);
    return id;
  }

  /** Copies another grammar's rules in; returns the id of its start rule. */
  embed(grammar: Grammar): number {
    const ids = grammar.rules.map(() => this.reserve());
    grammar.rules.forEach((rule, r) => {
      this.define(
        ids[r] ?? 0,
        rule.map((alt) => alt.map((el) => ('ref' in el ? { ref: ids[el.ref] ?? 0 } : el))),
      );
    });
    return ids[0] ?? 0;
  }

  build(root: number): Grammar {
    if (root !== 0) {
      // Rule 0 is the start symbol: put a forwarding rule there.
      throw new RangeError('the root rule must be the first one reserved');
    }
    const grammar: Grammar = { rules: this.rules.map((r) => r.slice()) };
    validateGrammar(grammar);
    return grammar;
  }
}

/** The elements matching exactly `text`'s UTF-8 bytes. */
export function bytesOf(text: string): Element[] {
  return Array.from(Buffer.from(text, 'utf8'), (b) => ({ set: [b, b] }));
}

export function ref(rule: number): Element {
  return { ref: rule };
}

export function set(...ranges: number[]): Element {
  return { set: ranges };
}

/** Byte ranges for one character code: [c, c]. */
export function ch(c: string): Element {
  const code = c.charCodeAt(0);
  return { set: [code, code] };
}

/**
 * Throws when a rule reference is dangling or a rule is left-recursive (through
 * references that can start a derivation without consuming a byte).
 */
export function validateGrammar(g: Grammar): void {
  const n = g.rules.length;
  if (n === 0) throw new RangeError('a grammar needs at least one rule');
  const nullable = nullableRules(g);
  // firstRefs[r]: rules that can be entered at r's start without consuming a byte.
  const firstRefs: number[][] = g.rules.map((rule, r) => {
    const out: number[] = [];
    for (const alt of rule) {
      for (const el of alt) {
        if ('set' in el) {
          checkRanges(el.set, r);
          break;
        }
        if (el.ref < 0 || el.ref >= n) throw new RangeError(`rule ${r} references missing rule ${el.ref}`);
        out.push(el.ref);
        if (!nullable[el.ref]) break;
      }
    }
    return out;
  });
  const state = new Uint8Array(n); // 0 new, 1 on path, 2 done
  const visit = (r: number): void => {
    state[r] = 1;
    for (const next of firstRefs[r] ?? []) {
      if (state[next] === 1) throw new RangeError(`rule ${next} is left-recursive`);
      if (state[next] === 0) visit(next);
    }
    state[r] = 2;
  };
  for (let r = 0; r < n; r++) if (state[r] === 0) visit(r);
}

function checkRanges(ranges: ByteRanges, rule: number): void {
  if (ranges.length === 0 || ranges.length % 2 !== 0) throw new RangeError(`rule ${rule}: a byte set needs [lo, hi] pairs`);
  for (let i = 0; i < ranges.length; i += 2) {
    const lo = ranges[i] ?? -1;
    const hi = ranges[i + 1] ?? -1;
    if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 0 && hi <= 255 && lo <= hi)) {
      throw new RangeError(`rule ${rule}: bad byte range [${lo}, ${hi}]`);
    }
  }
}

/** Which rules can derive the empty string. */
export function nullableRules(g: Grammar): boolean[] {
  const nullable = g.rules.map(() => false);
  let changed = true;
  while (changed) {
    changed = false;
    g.rules.forEach((rule, r) => {
      if (nullable[r]) return;
      if (rule.some((alt) => alt.every((el) => 'ref' in el && nullable[el.ref] === true))) {
        nullable[r] = true;
        changed = true;
      }
    });
  }
  return nullable;
}
