/**
 * What one sequence has seen, in the two shapes the penalties need:
 * - generated tokens with counts (presence / frequency penalties, OpenAI:
 *   output tokens only);
 * - distinct prompt + generated tokens (repetition penalty, HF / CTRL).
 * Both are stored as dense lists of distinct ids so a penalty pass touches only
 * the tokens that occurred, never the whole vocabulary. Memory is O(distinct
 * tokens) plus a vocab-sized bitset (19 KB at 152k).
 */
export class TokenHistory {
  readonly vocabSize: number;
  #seenBits: Uint32Array;
  #seenIds: Int32Array;
  #seenCount = 0;
  #genIds: Int32Array;
  #genCounts: Uint32Array;
  #genDistinct = 0;
  #genSlot = new Map<number, number>();
  #genTotal = 0;

  constructor(vocabSize: number, promptTokens: readonly number[]) {
    if (!Number.isInteger(vocabSize) || vocabSize <= 0) {
      throw new RangeError(`vocabSize must be a positive integer, got ${String(vocabSize)}`);
    }
    this.vocabSize = vocabSize;
    this.#seenBits = new Uint32Array(Math.ceil(vocabSize / 32));
    this.#seenIds = new Int32Array(64);
    this.#genIds = new Int32Array(16);
    this.#genCounts = new Uint32Array(16);
    for (let i = 0; i < promptTokens.length; i++) {
      const id = promptTokens[i];
      if (id === undefined) continue;
      this.#check(id, `promptTokens[${i}]`);
      this.#markSeen(id);
    }
  }

  /** Records one generated token. */
  record(tokenId: number): void {
    this.#check(tokenId, 'tokenId');
    this.#markSeen(tokenId);
    this.#genTotal++;
    const slot = this.#genSlot.get(tokenId);
    if (slot !== undefined) {
      this.#genCounts[slot] = (this.#genCounts[slot] ?? 0) + 1;
      return;
    }
    if (this.#genDistinct === this.#genIds.length) {
      this.#genIds = grow(this.#genIds, new Int32Array(this.#genIds.length * 2));
      this.#genCounts = grow(this.#genCounts, new Uint32Array(this.#genCounts.length * 2));
    }
    this.#genSlot.set(tokenId, this.#genDistinct);
    this.#genIds[this.#genDistinct] = tokenId;
    this.#genCounts[this.#genDistinct] = 1;
    this.#genDistinct++;
  }

  /** Number of generated tokens so far (with repeats). */
  get generatedLength(): number {
    return this.#genTotal;
  }

  /** Distinct generated ids in [0, generatedDistinct); parallel to generatedCounts. Do not mutate. */
  get generatedIds(): Int32Array {
    return this.#genIds;
  }

  get generatedCounts(): Uint32Array {
    return this.#genCounts;
  }

  get generatedDistinct(): number {
    return this.#genDistinct;
  }

  /** Distinct prompt + generated ids in [0, seenCount). Do not mutate. */
  get seenIds(): Int32Array {
    return this.#seenIds;
  }

  get seenCount(): number {
    return this.#seenCount;
  }

  countOf(tokenId: number): number {
    const slot = this.#genSlot.get(tokenId);
    return slot === undefined ? 0 : (this.#genCounts[slot] ?? 0);
  }

  hasSeen(tokenId: number): boolean {
    if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= this.vocabSize) return false;
    return ((this.#seenBits[tokenId >>> 5] ?? 0) & (1 << (tokenId & 31))) !== 0;
  }

  #markSeen(id: number): void {
    const word = id >>> 5;
    const bit = 1 << (id & 31);
    const bits = this.#seenBits[word] ?? 0;
    if ((bits & bit) !== 0) return;
    this.#seenBits[word] = bits | bit;
    if (this.#seenCount === this.#seenIds.length) {
      this.#seenIds = grow(this.#seenIds, new Int32Array(this.#seenIds.length * 2));
    }
    this.#seenIds[this.#seenCount++] = id;
  }

  #check(id: number, what: string): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`${what} must be a token id in [0, ${this.vocabSize}), got ${String(id)}`);
    }
  }
}

function grow<T extends Int32Array | Uint32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}
