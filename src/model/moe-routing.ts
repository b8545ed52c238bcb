/**
 * Token -> expert routing as transformers does it for Mixtral and Qwen2-MoE:
 * softmax over all router logits (in float64 here), top-k by probability (ties to
 * the lower expert index), renormalised over the k when normTopKProb. Then the
 * tokens are grouped by expert, so each expert runs once per layer on all the
 * rows that chose it.
 */
export interface ExpertGroup {
  readonly expert: number;
  /** Row indices (token positions in the flattened batch), ascending. */
  readonly rows: number[];
  /** Routing weight of each row. */
  readonly weights: number[];
}

/** Top-k expert ids per row, [rows * topK]. */
export function topKExperts(logits: Float32Array, rows: number, numExperts: number, topK: number): Int32Array {
  const out = new Int32Array(rows * topK);
  const chosen = new Uint8Array(numExperts);
  for (let r = 0; r < rows; r++) {
    chosen.fill(0);
    const base = r * numExperts;
    for (let j = 0; j < topK; j++) {
      let best = -1;
      for (let e = 0; e < numExperts; e++) {
        if (chosen[e]) continue;
        if (best < 0 || logits[base + e]! > logits[base + best]!) best = e;
      }
      chosen[best] = 1;
      out[r * topK + j] = best;
    }
  }
  return out;
}

/** Groups rows by routed expert (ascending expert id) with their routing weights. */
export function routeRows(logits: Float32Array, rows: number, numExperts: number, topK: number, normTopKProb: boolean): ExpertGroup[] {
  const picks = topKExperts(logits, rows, numExperts, topK);
  const groups = new Map<number, ExpertGroup>();
  for (let r = 0; r < rows; r++) {
    const base = r * numExperts;
    let max = -Infinity;
    for (let e = 0; e < numExperts; e++) max = Math.max(max, logits[base + e]!);
    let sum = 0;
    for (let e = 0; e < numExperts; e++) sum += Math.exp(logits[base + e]! - max);
    let picked = 0;
    for (let j = 0; j < topK; j++) picked += Math.exp(logits[base + picks[r * topK + j]!]! - max) / sum;
    for (let j = 0; j < topK; j++) {
      const e = picks[r * topK + j]!;
      const p = Math.exp(logits[base + e]! - max) / sum;
      let g = groups.get(e);
      if (!g) {
        g = { expert: e, rows: [], weights: [] };
        groups.set(e, g);
      }
      g.rows.push(r);
      g.weights.push(normTopKProb ? p / picked : p);
    }
  }
  return [...groups.values()].sort((a, b) => a.expert - b.expert);
}
