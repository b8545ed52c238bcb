/**
 * A grammar (grammar.ts) as a token-level automaton, built lazily.
 *
 * Byte level: the parser state is a set of pushdown stacks (a nondeterministic
 * pushdown automaton, as llama.cpp's grammar sampler keeps it), each stack a
 * hash-consed linked list of grammar positions, so a set of stacks is a small
 * sorted int array and interns to one integer. Advancing by a byte is memoized
 * per (state, byte): after warm-up, the grammar runs as a DFA that grows only
 * where the text goes (nesting depth, counted repetitions). Right recursion is
 * a tail call (no frame is pushed when the reference ends its alternative), so
 * "a string body" or "a list of items" is one state however long it gets.
 *
 * Token level: the vocabulary's byte strings sit in a trie (token-trie.ts);
 * the tokens allowed from a state come from one walk of the trie in which a
 * subtree is cut at the first byte the grammar refuses (as llguidance's token
 * trie walk does), and the result is cached per state as a bitset. So each
 * state costs one walk, once per automaton, and a step in a known state costs
 * a bitset lookup; automata are cached by grammar in the engine, so repeated
 * schemas start warm (XGrammar's compile cache plays the same role).
 *
 * Budget: minBytes(state) is how many bytes at least complete a document
 * from a state. When few tokens remain, only tokens that keep completion
 * within the remaining budget are allowed, so a response that hits max_tokens
 * still parses (each byte has a token of its own in byte-fallback and
 * byte-level vocabularies). With a budget below the grammar's shortest
 * document, nothing can help, and the output is the best prefix.
 */
import type { Grammar } from './grammar.js';
import type { TokenTrie } from './token-trie.js';

const END = 0;
const SET = 1;
const REF = 2;
const UNKNOWN = -2;
export const DEAD = -1;
/**
 * A cap on lazily built states per automaton (each holds a 1 KiB transition
 * row): past it the request fails rather than the worker's memory.
 */
const MAX_STATES = 50_000;
/** A cap on the (position, stack) pairs one byte's transition may visit. */
const MAX_FRONTIER = 200_000;
/** Masks cached per automaton (vocab/8 bytes each: 6 KiB at a 49k vocabulary); past it, masks are computed per step. */
const MAX_CACHED_MASKS = 4096;

export class GrammarAutomaton {
  private readonly kind: Uint8Array;
  private readonly arg: Int32Array;
  private readonly sets: Uint8Array[];
  private readonly ruleStarts: Int32Array[];
  private readonly minRem: Float64Array;

  /** Stack id 0 is the empty stack (the document is complete). */
  private readonly stackPos: number[] = [0];
  private readonly stackParent: number[] = [0];
  private readonly stackMin: number[] = [0];
  private readonly stackIds = new Map<number, number>();

  private readonly stateStacks: Int32Array[] = [];
  private readonly stateIds = new Map<string, number>();
  private readonly trans: Int32Array[] = [];
  private readonly stateMin: number[] = [];

  private readonly masks: (Uint32Array | undefined)[] = [];
  private cachedMasks = 0;
  /** The largest minBytes of any state an allowed token leads to, per state with a cached mask. */
  private readonly maskMaxDist: number[] = [];
  readonly initial: number;

  constructor(
    grammar: Grammar,
    readonly trie: TokenTrie,
  ) {
    const starts: number[][] = [];
    const kind: number[] = [];
    const arg: number[] = [];
    const sets: Uint8Array[] = [];
    const setIndex = new Map<string, number>();
    grammar.rules.forEach((rule, r) => {
      const ruleStarts: number[] = [];
      starts[r] = ruleStarts;
      for (const alt of rule) {
        ruleStarts.push(kind.length);
        for (const el of alt) {
          if ('ref' in el) {
            kind.push(REF);
            arg.push(el.ref);
          } else {
            const key = el.set.join(',');
            let index = setIndex.get(key);
            if (index === undefined) {
              const bits = new Uint8Array(256);
              for (let i = 0; i < el.set.length; i += 2) bits.fill(1, el.set[i] ?? 0, (el.set[i + 1] ?? 0) + 1);
              index = sets.length;
              sets.push(bits);
              setIndex.set(key, index);
            }
            kind.push(SET);
            arg.push(index);
          }
        }
        kind.push(END);
        arg.push(0);
      }
    });
    this.kind = Uint8Array.from(kind);
    this.arg = Int32Array.from(arg);
    this.sets = sets;
    this.ruleStarts = starts.map((s) => Int32Array.from(s));
    this.minRem = this.computeMinRemaining(grammar);
    const out = new Set<number>();
    const seen = new Set<number>();
    for (const s of this.ruleStarts[0] ?? []) this.frontier(s, 0, out, seen);
    this.initial = this.intern(out);
    if (this.initial === DEAD) throw new RangeError('the grammar accepts nothing');
  }

  get stateCount(): number {
    return this.stateStacks.length;
  }

  /** True when the text so far is a complete document. */
  accepting(state: number): boolean {
    return (this.stateStacks[state]?.[0] ?? -1) === 0;
  }

  /** True when some byte can follow (the document can go on). */
  canContinue(state: number): boolean {
    const stacks = this.stateStacks[state];
    return stacks !== undefined && (stacks.length > 1 || (stacks[0] ?? 0) !== 0);
  }

  /** The fewest bytes that complete a document from this state. */
  minBytes(state: number): number {
    return this.stateMin[state] ?? Infinity;
  }

  step(state: number, byte: number): number {
    const row = this.trans[state];
    if (row === undefined) return DEAD;
    const known = row[byte] ?? DEAD;
    if (known !== UNKNOWN) return known;
    const next = this.computeStep(state, byte);
    row[byte] = next;
    return next;
  }

  /** The state after `bytes`, or DEAD. */
  advance(state: number, bytes: Uint8Array): number {
    let s = state;
    for (let i = 0; i < bytes.length && s !== DEAD; i++) s = this.step(s, bytes[i] ?? 0);
    return s;
  }

  /**
   * Bitset (bit t of word t >>> 5) of the tokens allowed from `state` such that
   * a document can still be completed within `budget` more tokens after it
   * (Infinity: no budget). The unbudgeted mask is cached per state; a budgeted
   * one is computed afresh, only when the budget actually bites.
   */
  mask(state: number, budget: number): Uint32Array {
    let cached = this.masks[state];
    if (cached === undefined) {
      const r = this.walk(state, Infinity);
      if (this.cachedMasks >= MAX_CACHED_MASKS) return budget >= r.maxDist ? r.mask : this.walk(state, budget).mask;
      cached = r.mask;
      this.masks[state] = cached;
      this.maskMaxDist[state] = r.maxDist;
      this.cachedMasks++;
    }
    if (budget >= (this.maskMaxDist[state] ?? Infinity)) return cached;
    return this.walk(state, budget).mask;
  }

  private walk(state: number, budget: number): { mask: Uint32Array; maxDist: number } {
    const t = this.trie;
    const mask = new Uint32Array((t.vocabSize + 31) >>> 5);
    let maxDist = 0;
    const nodes = t.scratchNodes;
    const states = t.scratchStates;
    nodes[0] = 0;
    states[0] = state;
    let top = 1;
    while (top > 0) {
      top--;
      const node = nodes[top] ?? 0;
      const s = states[top] ?? 0;
      const end = t.edgeStart[node + 1] ?? 0;
      for (let e = t.edgeStart[node] ?? 0; e < end; e++) {
        const next = this.step(s, t.edgeByte[e] ?? 0);
        if (next === DEAD) continue;
        const child = t.edgeChild[e] ?? 0;
        const tEnd = t.tokenStart[child + 1] ?? 0;
        const tStart = t.tokenStart[child] ?? 0;
        if (tEnd > tStart) {
          const d = this.stateMin[next] ?? Infinity;
          if (d <= budget) {
            if (d > maxDist) maxDist = d;
            for (let k = tStart; k < tEnd; k++) {
              const id = t.tokenIds[k] ?? 0;
              mask[id >>> 5] = (mask[id >>> 5] ?? 0) | (1 << (id & 31));
            }
          }
        }
        if ((t.edgeStart[child + 1] ?? 0) > (t.edgeStart[child] ?? 0)) {
          nodes[top] = child;
          states[top] = next;
          top++;
        }
      }
    }
    return { mask, maxDist };
  }

  private computeStep(state: number, byte: number): number {
    const stacks = this.stateStacks[state];
    if (stacks === undefined) return DEAD;
    const out = new Set<number>();
    const seen = new Set<number>();
    for (let i = 0; i < stacks.length; i++) {
      const s = stacks[i] ?? 0;
      if (s === 0) continue;
      const pos = this.stackPos[s] ?? 0;
      if (this.sets[this.arg[pos] ?? 0]?.[byte] === 1) this.frontier(pos + 1, this.stackParent[s] ?? 0, out, seen);
    }
    return this.intern(out);
  }

  /**
   * Adds the stacks reachable from (pos over parent) without consuming a byte whose top is a byte set (or the empty stack).
   * What it adds depends only on (pos, parent), so `seen` cuts every second visit: nested nullable loops reach the same
   * pair along exponentially many paths. `seen` also bounds one byte's work, so a pathological grammar fails the request.
   */
  private frontier(pos: number, parent: number, out: Set<number>, seen: Set<number>): void {
    const key = pos * 4294967296 + parent;
    if (seen.has(key)) return;
    if (seen.size >= MAX_FRONTIER) throw new RangeError(`the grammar needs more than ${MAX_FRONTIER} parser moves for one byte`);
    seen.add(key);
    switch (this.kind[pos]) {
      case SET:
        out.add(this.stack(pos, parent));
        return;
      case END:
        if (parent === 0) out.add(0);
        else this.frontier(this.stackPos[parent] ?? 0, this.stackParent[parent] ?? 0, out, seen);
        return;
      default: {
        const ret = pos + 1;
        // Tail call: a reference that ends its alternative needs no return frame.
        const next = this.kind[ret] === END ? parent : this.stack(ret, parent);
        const starts = this.ruleStarts[this.arg[pos] ?? 0];
        if (starts !== undefined) for (let i = 0; i < starts.length; i++) this.frontier(starts[i] ?? 0, next, out, seen);
      }
    }
  }

  private stack(pos: number, parent: number): number {
    const key = pos * 4294967296 + parent;
    let id = this.stackIds.get(key);
    if (id === undefined) {
      id = this.stackPos.length;
      this.stackPos.push(pos);
      this.stackParent.push(parent);
      this.stackMin.push((this.minRem[pos] ?? Infinity) + (parent === 0 ? 0 : (this.stackMin[parent] ?? Infinity)));
      this.stackIds.set(key, id);
    }
    return id;
  }

  private intern(stacks: Set<number>): number {
    if (stacks.size === 0) return DEAD;
    const sorted = Int32Array.from(stacks).sort();
    const key = sorted.join(',');
    let id = this.stateIds.get(key);
    if (id === undefined) {
      if (this.stateStacks.length >= MAX_STATES) throw new RangeError(`the grammar needs more than ${MAX_STATES} parser states for this output`);
      id = this.stateStacks.length;
      this.stateStacks.push(sorted);
      this.trans.push(new Int32Array(256).fill(UNKNOWN));
      let min = Infinity;
      for (let i = 0; i < sorted.length; i++) min = Math.min(min, this.stackMin[sorted[i] ?? 0] ?? Infinity);
      this.stateMin.push(min);
      this.stateIds.set(key, id);
    }
    return id;
  }

  /** minRem[pos]: fewest bytes from pos to the end of its alternative. */
  private computeMinRemaining(grammar: Grammar): Float64Array {
    const ruleMin = grammar.rules.map(() => Infinity);
    let changed = true;
    while (changed) {
      changed = false;
      grammar.rules.forEach((rule, r) => {
        let best = Infinity;
        for (const alt of rule) {
          let sum = 0;
          for (const el of alt) sum += 'ref' in el ? (ruleMin[el.ref] ?? Infinity) : 1;
          best = Math.min(best, sum);
        }
        if (best < (ruleMin[r] ?? Infinity)) {
          ruleMin[r] = best;
          changed = true;
        }
      });
    }
    const minRem = new Float64Array(this.kind.length);
    for (let pos = this.kind.length - 1; pos >= 0; pos--) {
      const k = this.kind[pos];
      if (k === END) minRem[pos] = 0;
      else minRem[pos] = (k === SET ? 1 : (ruleMin[this.arg[pos] ?? 0] ?? Infinity)) + (minRem[pos + 1] ?? 0);
    }
    return minRem;
  }
}
