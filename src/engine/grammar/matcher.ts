/**
 * One sequence's position in a grammar: what the sampler masks with, and what
 * the engine advances with each chosen token. Automata are shared between
 * sequences with the same grammar (AutomatonCache), matchers never are.
 */
import { DEAD, GrammarAutomaton } from './automaton.js';
import type { Grammar } from './grammar.js';
import type { TokenTrie } from './token-trie.js';

/** What the engine reports about a constrained generation (the response's `cap.constraint`). */
export interface ConstraintReport {
  /** Parser states the request's automaton holds (shared with requests of the same grammar). */
  readonly states: number;
  /** Time spent computing masks and advancing the grammar for this sequence. */
  readonly maskMs: number;
  /** True when the grammar reached a complete document (the generation then ends by itself or by EOS). */
  readonly complete: boolean;
}

export class GrammarMatcher {
  private state: number;
  private maskMs = 0;

  constructor(
    readonly automaton: GrammarAutomaton,
    /** Tokens that end generation (EOS, stop_token_ids): allowed exactly when the document is complete. */
    private readonly stopIds: ReadonlySet<number>,
  ) {
    this.state = automaton.initial;
    this.stopWords = new Set([...stopIds].map((id) => id >>> 5));
  }

  /** Mask words (id >>> 5) that hold a stop token. */
  private readonly stopWords: ReadonlySet<number>;

  /** The document is complete and nothing may follow it: the generation ends here. */
  get finished(): boolean {
    return this.automaton.accepting(this.state) && !this.automaton.canContinue(this.state);
  }

  get accepting(): boolean {
    return this.automaton.accepting(this.state);
  }

  /**
   * Sets every token the grammar does not allow next to -Infinity. `remaining`
   * is how many tokens the sequence may still generate, this one included.
   */
  apply(work: Float32Array, remaining: number): void {
    const t0 = performance.now();
    const a = this.automaton;
    let mask = a.mask(this.state, Math.max(0, remaining - 1));
    const accepting = a.accepting(this.state);
    if (!accepting && isEmpty(mask)) mask = a.mask(this.state, Infinity);
    if (!accepting && isEmpty(mask)) {
      throw new Error('the grammar allows no token of this vocabulary here (a byte it needs has no token)');
    }
    const V = work.length;
    const words = mask.length;
    const stopWords = this.stopWords;
    for (let w = 0; w < words; w++) {
      const bits = mask[w] ?? 0;
      if (bits === -1 || bits === 0xffffffff) continue;
      const base = w << 5;
      const end = Math.min(32, V - base);
      // A word with nothing allowed (most words, in a narrow state) is one fill, unless it holds a stop token to keep.
      if (bits === 0 && !(accepting && stopWords.has(w))) {
        work.fill(-Infinity, base, base + end);
        continue;
      }
      for (let j = 0; j < end; j++) {
        if ((bits & (1 << j)) === 0) {
          const id = base + j;
          if (!(accepting && this.stopIds.has(id))) work[id] = -Infinity;
        }
      }
    }
    this.maskMs += performance.now() - t0;
  }

  /** Moves past the chosen token; throws when the grammar refuses it (a forced token, or a bug). */
  accept(tokenId: number): void {
    if (this.stopIds.has(tokenId)) return;
    const t0 = performance.now();
    const bytes = this.automaton.trie.tokenBytes[tokenId];
    const next = bytes === null || bytes === undefined ? DEAD : this.automaton.advance(this.state, bytes);
    this.maskMs += performance.now() - t0;
    if (next === DEAD) throw new Error(`token ${tokenId} is not allowed by the grammar here`);
    this.state = next;
  }

  report(): ConstraintReport {
    return { states: this.automaton.stateCount, maskMs: this.maskMs, complete: this.automaton.accepting(this.state) };
  }
}

function isEmpty(mask: Uint32Array): boolean {
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) return false;
  return true;
}

/** Compiled automata by grammar, most recently used last; a repeated schema starts with its states and masks warm. */
export class AutomatonCache {
  private readonly entries = new Map<string, GrammarAutomaton>();

  constructor(
    private readonly trie: () => TokenTrie,
    private readonly capacity = 8,
  ) {}

  get(grammar: Grammar): GrammarAutomaton {
    const key = JSON.stringify(grammar.rules);
    const known = this.entries.get(key);
    if (known !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, known);
      return known;
    }
    const automaton = new GrammarAutomaton(grammar, this.trie());
    this.entries.set(key, automaton);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    return automaton;
  }
}
