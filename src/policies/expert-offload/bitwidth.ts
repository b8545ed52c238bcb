/**
 * EdgeMoE's expert-wise bitwidth adaptation.
 *
 * Profile (measured on calibration text, see engine/moe-profile.ts): for each
 * expert e and each candidate bitwidth b,
 *
 *   cost_e(b) = sum over calibration tokens t routed to e of  w_te^2 * ||y_e^b(x_t) - y_e^32(x_t)||^2
 *               ---------------------------------------------------------------------------------
 *                           sum over all calibration tokens t of ||moe_out_t||^2   (same layer)
 *
 * i.e. how much storing e at b bits changes its layer's output, summed over the
 * tokens that actually use it: frequency (how many tokens) times routing weight
 * (how much each listens) times quantization damage. cost_e(32) = 0. An expert the
 * calibration text never reaches costs 0 at every width.
 *
 * Assignment: choose one b_e per expert to minimise sum_e cost_e(b_e) subject to
 * sum_e bytes_e(b_e) <= targetBytes (a multiple-choice knapsack). We use the
 * classic greedy: start every expert at its smallest width, then repeatedly apply
 * the single upgrade (e: b -> b') with the largest cost reduction per added byte
 * that still fits, until none fits or none helps. Upgrades are taken from each
 * expert's lower convex hull of (bytes, cost), so the greedy never steps onto a
 * width that a larger one dominates; on the LP relaxation this greedy is optimal,
 * and it is within one item of the integer optimum. If even the all-smallest
 * assignment exceeds the target, every expert stays at its smallest width (the
 * cache then streams what does not fit).
 */
import type { ExpertBits } from '../../model/compile/moe-quantize.js';

export interface ExpertProfileEntry {
  readonly layer: number;
  readonly expert: number;
  /** Calibration tokens routed to this expert. */
  readonly tokens: number;
  /** cost_e(b) for each profiled width (see above). */
  readonly cost: Readonly<Partial<Record<ExpertBits, number>>>;
}

export interface BitwidthProblem {
  readonly profile: readonly ExpertProfileEntry[];
  /** Candidate widths (e.g. [4, 8, 32]). */
  readonly choices: readonly ExpertBits[];
  /** Bytes of one expert at each width. */
  readonly bytes: (layer: number, expert: number, bits: ExpertBits) => number;
  readonly targetBytes: number;
}

export interface BitwidthAssignment {
  /** Keyed by layer * numExperts + expert, in profile order. */
  readonly bits: ReadonlyMap<string, ExpertBits>;
  readonly totalBytes: number;
  /** sum_e cost_e(b_e): the predicted importance-weighted error. */
  readonly totalCost: number;
}

export function assignmentKey(layer: number, expert: number): string {
  return `${layer}:${expert}`;
}

interface Option {
  readonly bits: ExpertBits;
  readonly bytes: number;
  readonly cost: number;
}

/** Lower convex hull of (bytes, cost), ascending bytes, strictly decreasing cost. */
function hull(options: Option[]): Option[] {
  const sorted = [...options].sort((a, b) => a.bytes - b.bytes || a.cost - b.cost);
  const out: Option[] = [];
  for (const o of sorted) {
    const last = out.at(-1);
    if (last !== undefined && o.cost >= last.cost) continue;
    while (out.length >= 2) {
      const a = out[out.length - 2]!;
      const b = out[out.length - 1]!;
      // b is above the segment a-o: it is never the best step.
      if ((b.cost - a.cost) * (o.bytes - a.bytes) >= (o.cost - a.cost) * (b.bytes - a.bytes)) out.pop();
      else break;
    }
    out.push(o);
  }
  return out;
}

export function assignBitwidths(problem: BitwidthProblem): BitwidthAssignment {
  if (problem.choices.length === 0) throw new Error('assignBitwidths: no candidate bitwidths');
  const hulls = problem.profile.map((p) => {
    const options: Option[] = problem.choices.map((bits) => {
      const cost = bits === 32 ? 0 : p.cost[bits];
      if (cost === undefined) throw new Error(`assignBitwidths: expert ${p.layer}:${p.expert} has no profiled cost at ${bits} bits`);
      return { bits, bytes: problem.bytes(p.layer, p.expert, bits), cost };
    });
    return hull(options);
  });
  const level = hulls.map(() => 0);
  let total = hulls.reduce((s, h) => s + h[0]!.bytes, 0);
  for (;;) {
    let best = -1;
    let bestRatio = 0;
    for (let i = 0; i < hulls.length; i++) {
      const h = hulls[i]!;
      const cur = h[level[i]!]!;
      const next = h[level[i]! + 1];
      if (next === undefined) continue;
      const added = next.bytes - cur.bytes;
      if (total + added > problem.targetBytes) continue;
      const ratio = (cur.cost - next.cost) / Math.max(added, 1);
      if (ratio > bestRatio) {
        bestRatio = ratio;
        best = i;
      }
    }
    if (best < 0) break;
    const h = hulls[best]!;
    total += h[level[best]! + 1]!.bytes - h[level[best]!]!.bytes;
    level[best] = level[best]! + 1;
  }
  const bits = new Map<string, ExpertBits>();
  let totalCost = 0;
  problem.profile.forEach((p, i) => {
    const o = hulls[i]![level[i]!]!;
    bits.set(assignmentKey(p.layer, p.expert), o.bits);
    totalCost += o.cost;
  });
  return { bits, totalBytes: total, totalCost };
}
