/**
 * Small deterministic stand-ins for the tokenizer and the scorer model, so the
 * methods' bookkeeping can be tested without model files. The scorer is a
 * toy language model with the one property the methods rely on: a token is
 * cheap (low surprisal) when it already occurred in the prefix, otherwise it
 * costs its own fixed surprisal.
 */
import type { DecodeStream, TextTokenizer } from '../../../../src/model/tokenizer-types.js';
import type { TokenScorer } from '../../../../src/policies/compression/scorer.js';

const PIECE = /\s*[\w']+|\s*[^\w\s]|\s+$/g;

/** Word-level tokenizer: each word or punctuation mark with its leading whitespace is one token. */
export class WordTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  private readonly pieces: string[] = ['<s>'];
  private readonly ids = new Map<string, number>([['<s>', 0]]);

  /** The vocabulary: every piece of every text. */
  constructor(...texts: string[]) {
    for (const p of texts.flatMap((t) => t.match(PIECE) ?? [])) {
      if (!this.ids.has(p)) {
        this.ids.set(p, this.pieces.length);
        this.pieces.push(p);
      }
    }
    this.vocabSize = this.pieces.length;
  }

  encode(text: string): number[] {
    return (text.match(PIECE) ?? []).map((p) => {
      const id = this.ids.get(p);
      if (id === undefined) throw new Error(`WordTokenizer: ${JSON.stringify(p)} is not in the vocabulary`);
      return id;
    });
  }

  decode(ids: readonly number[]): string {
    return ids.map((i) => this.idToPiece(i)).join('');
  }

  idToPiece(id: number): string {
    const p = this.pieces[id];
    if (p === undefined) throw new RangeError(`WordTokenizer: no id ${id}`);
    return p;
  }

  createDecodeStream(): DecodeStream {
    return { push: (id: number) => this.idToPiece(id), flush: () => '', peek: (ids: readonly number[]) => ids.map((id) => this.idToPiece(id)) };
  }

  tokenText(_context: readonly number[], id: number): string {
    return this.idToPiece(id);
  }

  tokenTexts(_context: readonly number[], ids: readonly number[]): string[] {
    return ids.map((id) => this.idToPiece(id));
  }
}

/** Toy LM: repeated tokens cost `repeat` nats, new ones `surprisal(token)`. Records every call. */
export class FakeScorer implements TokenScorer {
  readonly calls: number[][] = [];

  constructor(
    readonly vocabSize: number,
    private readonly surprisal: (token: number) => number,
    private readonly repeat = 0.05,
  ) {}

  async logprobs(tokens: readonly number[]): Promise<Float32Array> {
    this.calls.push([...tokens]);
    const out = new Float32Array(tokens.length);
    out[0] = Number.NaN;
    const seen = new Set<number>(tokens.length > 0 ? [tokens[0] ?? 0] : []);
    for (let t = 1; t < tokens.length; t++) {
      const id = tokens[t] ?? 0;
      out[t] = seen.has(id) ? -this.repeat : -this.surprisal(id);
      seen.add(id);
    }
    return out;
  }
}

/** A surprisal per token id that varies but is fixed: 1 + (id * 7919 mod 97) / 10 nats. */
export function hashedSurprisal(id: number): number {
  return 1 + ((id * 7919) % 97) / 10;
}
