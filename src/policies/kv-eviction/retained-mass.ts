/**
 * The online accuracy proxy: the share of attention mass that an eviction
 * kept, from whichever statistic the runtime collected (the newest query's
 * attention, else the observation window's, else the accumulated attention),
 * averaged over KV heads. null when the view carries no attention statistics.
 */
import type { KeepPlan, LayerKvView } from '../types.js';

export function attentionMassRetained(view: LayerKvView, plan: KeepPlan): number | null {
  const { numKvHeads: h, length: n } = view;
  const mass = perHeadMass(view);
  if (mass === null) return null;
  let sum = 0;
  for (let head = 0; head < h; head++) {
    let total = 0;
    for (let j = 0; j < n; j++) total += mass[head * n + j] ?? 0;
    let kept = 0;
    for (const j of plan[head] ?? []) kept += mass[head * n + j] ?? 0;
    sum += total > 0 ? kept / total : 1;
  }
  return h > 0 ? sum / h : 1;
}

/** [numKvHeads * length] attention mass per entry, summed over the group's heads (and window queries). */
function perHeadMass(view: LayerKvView): Float64Array | null {
  const { numKvHeads: h, length: n } = view;
  const rows = view.lastQueryAttention ?? view.windowAttention;
  if (rows !== null) {
    const perHead = rows.length / (h * n);
    if (!Number.isInteger(perHead) || perHead < 1) return null;
    const out = new Float64Array(h * n);
    for (let head = 0; head < h; head++) {
      for (let r = 0; r < perHead; r++) {
        const base = (head * perHead + r) * n;
        for (let j = 0; j < n; j++) out[head * n + j] = (out[head * n + j] ?? 0) + (rows[base + j] ?? 0);
      }
    }
    return out;
  }
  if (view.accumulatedAttention !== null && view.accumulatedAttention.length === h * n) return Float64Array.from(view.accumulatedAttention);
  return null;
}
