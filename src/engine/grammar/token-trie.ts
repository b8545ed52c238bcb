/**
 * The vocabulary's byte strings as a trie in flat typed arrays (CSR: a node's
 * edges are edgeStart[node]..edgeStart[node + 1], sorted by byte; the tokens
 * ending at a node are tokenStart[node]..tokenStart[node + 1] of tokenIds).
 * Several ids can share one byte string (a byte-fallback piece "<0x41>" and
 * "A"); tokens without bytes (special and control tokens) are not in it, so a
 * grammar never allows them. Built once per engine.
 */
export class TokenTrie {
  readonly edgeStart: Int32Array;
  readonly edgeByte: Uint8Array;
  readonly edgeChild: Int32Array;
  readonly tokenStart: Int32Array;
  readonly tokenIds: Int32Array;
  readonly nodeCount: number;
  /** Walk stacks (a walk never yields, so one pair serves every automaton of the thread). */
  readonly scratchNodes: Int32Array;
  readonly scratchStates: Int32Array;

  constructor(
    /** tokenBytes[id]: what the token adds to the text; null for tokens a grammar must never produce. */
    readonly tokenBytes: readonly (Uint8Array | null)[],
    readonly vocabSize: number,
  ) {
    // Build with per-node maps, then flatten breadth-first.
    const children: Map<number, number>[] = [new Map<number, number>()];
    const tokensAt: number[][] = [[]];
    tokenBytes.forEach((bytes, id) => {
      if (bytes === null || bytes.length === 0 || id >= vocabSize) return;
      let node = 0;
      for (const b of bytes) {
        const map = children[node] as Map<number, number>;
        let child = map.get(b);
        if (child === undefined) {
          child = children.length;
          children.push(new Map());
          tokensAt.push([]);
          map.set(b, child);
        }
        node = child;
      }
      tokensAt[node]?.push(id);
    });
    const n = children.length;
    // Renumber breadth-first so the root is 0 and edges are contiguous.
    const order: number[] = [0];
    const newId = new Int32Array(n);
    for (let i = 0; i < order.length; i++) {
      const old = order[i] ?? 0;
      const sorted = [...(children[old] ?? new Map<number, number>()).entries()].sort((a, b) => a[0] - b[0]);
      for (const [, child] of sorted) {
        newId[child] = order.length;
        order.push(child);
      }
    }
    this.nodeCount = n;
    this.edgeStart = new Int32Array(n + 1);
    this.edgeByte = new Uint8Array(Math.max(0, n - 1));
    this.edgeChild = new Int32Array(Math.max(0, n - 1));
    this.tokenStart = new Int32Array(n + 1);
    let edges = 0;
    let tokens = 0;
    const ids: number[] = [];
    order.forEach((old, i) => {
      this.edgeStart[i] = edges;
      const sorted = [...(children[old] ?? new Map<number, number>()).entries()].sort((a, b) => a[0] - b[0]);
      for (const [b, child] of sorted) {
        this.edgeByte[edges] = b;
        this.edgeChild[edges] = newId[child] ?? 0;
        edges++;
      }
      this.tokenStart[i] = tokens;
      for (const id of tokensAt[old] ?? []) {
        ids.push(id);
        tokens++;
      }
    });
    this.edgeStart[n] = edges;
    this.tokenStart[n] = tokens;
    this.tokenIds = Int32Array.from(ids);
    // Depth-first walk: at most (edges) entries pending at once.
    this.scratchNodes = new Int32Array(Math.max(1, edges + 1));
    this.scratchStates = new Int32Array(Math.max(1, edges + 1));
  }
}
