/**
 * STI's elastic pipeline planning (Guo et al., ASPLOS'23, §4): given each
 * shard's profiled importance (the KL a degraded shard costs), a resident-memory
 * budget, a preload buffer and a latency target, choose every shard's bitwidth
 * and whether it stays resident, sits in the preload buffer, or streams from
 * disk through the IO/compute pipeline each forward pass.
 *
 * 1. Preload buffer: the first layers' shards, in layer order, while they fit
 *    (the first layers run before any IO can have finished).
 * 2. Residency under budgetBytes: simulate the pipeline (below) and make resident
 *    a shard of the layer that stalls first, the largest that fits, until nothing
 *    stalls; the rest of the budget goes to the largest streamed shards (fewer
 *    bytes read per token).
 * 3. Bitwidths: the multiple-choice knapsack of EdgeMoE's adaptation
 *    (expert-offload/bitwidth.ts, the same greedy on convex hulls) minimising the
 *    summed profiled cost under a total-bytes cap S; S is the largest cap (binary
 *    search) whose plan the simulation predicts within targetMsPerToken. No target:
 *    every shard at its widest choice (streaming costs time, not accuracy).
 *
 * Pipeline model (what sti-runner.ts does): layer l+1's streamed reads are issued
 * when layer l starts computing; reads are served one after another at
 * `readBytesPerMs`; layer l computes for `computeMsPerLayer` once its own reads are
 * done and layer l-1 finished.
 */
import type { ExpertBits } from '../../model/compile/moe-quantize.js';
import { assignBitwidths, assignmentKey, type ExpertProfileEntry } from '../expert-offload/bitwidth.js';

export interface PlanShard {
  readonly id: number;
  readonly layer: number;
  /** File bytes at each width. */
  readonly bytes: (bits: ExpertBits) => number;
  /** Profiled cost at each width (0 at 32); absent: no profile. */
  readonly cost: Readonly<Partial<Record<ExpertBits, number>>> | null;
}

export interface Hardware {
  readonly computeMsPerLayer: number;
  readonly readBytesPerMs: number;
}

export interface PlanProblem {
  readonly numLayers: number;
  /** Ids 0..n-1 in layer order. */
  readonly shards: readonly PlanShard[];
  readonly choices: readonly ExpertBits[];
  /** One width for every shard (bits: 32/8/4/2), or null (adaptive). */
  readonly fixedBits: ExpertBits | null;
  readonly budgetBytes: number;
  readonly preloadBytes: number;
  /** 0: no latency target. */
  readonly targetMsPerToken: number;
  readonly hardware: Hardware;
}

export interface Plan {
  readonly bits: readonly ExpertBits[];
  readonly resident: readonly boolean[];
  readonly preload: readonly boolean[];
  readonly residentBytes: number;
  readonly preloadBytes: number;
  readonly streamedBytes: number;
  /** Every shard at its width: the model's weight memory if all were resident. */
  readonly totalBytes: number;
  readonly predictedMsPerToken: number;
  readonly predictedStallMs: number;
  /** Summed profiled cost of the chosen widths (0 without a profile or at 32 bits). */
  readonly cost: number;
  readonly meetsTarget: boolean;
}

/** Predicted forward time and IO stall of a placement (ms). */
export function simulate(numLayers: number, streamedPerLayer: readonly number[], hw: Hardware): { totalMs: number; stallMs: number; firstStallLayer: number } {
  let ioEnd = (streamedPerLayer[0] ?? 0) / hw.readBytesPerMs;
  let computeEnd = 0;
  let firstStallLayer = -1;
  let stall = 0;
  for (let l = 0; l < numLayers; l++) {
    const start = Math.max(computeEnd, ioEnd);
    if (ioEnd > computeEnd + 1e-9) {
      stall += ioEnd - computeEnd;
      if (firstStallLayer < 0) firstStallLayer = l;
    }
    if (l + 1 < numLayers) ioEnd = Math.max(start, ioEnd) + (streamedPerLayer[l + 1] ?? 0) / hw.readBytesPerMs;
    computeEnd = start + hw.computeMsPerLayer;
  }
  return { totalMs: computeEnd, stallMs: stall, firstStallLayer };
}

function place(p: PlanProblem, bits: readonly ExpertBits[]): Omit<Plan, 'cost' | 'meetsTarget'> {
  const n = p.shards.length;
  const size = (id: number): number => p.shards[id]?.bytes(bits[id] ?? 32) ?? 0;
  const preload = new Array<boolean>(n).fill(false);
  const resident = new Array<boolean>(n).fill(false);
  let preloadUsed = 0;
  for (const s of p.shards) {
    const b = size(s.id);
    if (preloadUsed + b > p.preloadBytes) break;
    preload[s.id] = true;
    preloadUsed += b;
  }
  const streamedPer = new Array<number>(p.numLayers).fill(0);
  for (const s of p.shards) if (!preload[s.id]) streamedPer[s.layer] = (streamedPer[s.layer] ?? 0) + size(s.id);
  let left = p.budgetBytes;
  const candidates = (layerMax: number): number[] =>
    p.shards.filter((s) => !preload[s.id] && !resident[s.id] && s.layer <= layerMax && size(s.id) <= left).map((s) => s.id);
  const take = (id: number): void => {
    const s = p.shards[id];
    if (s === undefined) return;
    resident[id] = true;
    left -= size(id);
    streamedPer[s.layer] = (streamedPer[s.layer] ?? 0) - size(id);
  };
  for (;;) {
    const sim = simulate(p.numLayers, streamedPer, p.hardware);
    if (sim.firstStallLayer < 0) break;
    // Prefer the stalling layer itself, then the earlier ones whose reads delay it.
    const c = candidates(sim.firstStallLayer).sort((a, b) => {
      const la = p.shards[a]?.layer ?? 0;
      const lb = p.shards[b]?.layer ?? 0;
      return lb - la || size(b) - size(a);
    });
    const pick = c[0];
    if (pick === undefined) break;
    take(pick);
  }
  for (const id of candidates(p.numLayers).sort((a, b) => size(b) - size(a) || a - b)) if (size(id) <= left) take(id);
  const sim = simulate(p.numLayers, streamedPer, p.hardware);
  let residentBytes = 0;
  let streamedBytes = 0;
  let totalBytes = 0;
  for (const s of p.shards) {
    const b = size(s.id);
    totalBytes += b;
    if (resident[s.id]) residentBytes += b;
    else if (!preload[s.id]) streamedBytes += b;
  }
  return {
    bits,
    resident,
    preload,
    residentBytes,
    preloadBytes: preloadUsed,
    streamedBytes,
    totalBytes,
    predictedMsPerToken: sim.totalMs,
    predictedStallMs: sim.stallMs,
  };
}

/** Widths minimising the profiled cost with all shards' bytes within `cap` (the knapsack). */
export function widthsUnder(p: PlanProblem, cap: number): { bits: ExpertBits[]; cost: number } {
  const entries: ExpertProfileEntry[] = p.shards.map((s) => ({ layer: s.layer, expert: s.id, tokens: 1, cost: s.cost ?? {} }));
  const a = assignBitwidths({ profile: entries, choices: p.choices, bytes: (_l, id, b) => p.shards[id]?.bytes(b) ?? 0, targetBytes: cap });
  return { bits: p.shards.map((s) => a.bits.get(assignmentKey(s.layer, s.id)) ?? 32), cost: a.totalCost };
}

function costOf(p: PlanProblem, bits: readonly ExpertBits[]): number {
  return p.shards.reduce((a, s) => a + (bits[s.id] === 32 ? 0 : (s.cost?.[bits[s.id] ?? 32] ?? 0)), 0);
}

export function planShards(p: PlanProblem): Plan {
  const widest = Math.max(...p.choices) as ExpertBits;
  const within = (pl: Omit<Plan, 'cost' | 'meetsTarget'>): boolean => p.targetMsPerToken <= 0 || pl.predictedMsPerToken <= p.targetMsPerToken;
  const finish = (bits: readonly ExpertBits[]): Plan => {
    const pl = place(p, bits);
    return { ...pl, cost: costOf(p, bits), meetsTarget: within(pl) };
  };
  if (p.fixedBits !== null) {
    const b = p.fixedBits;
    return finish(p.shards.map(() => b));
  }
  const all = p.shards.map(() => widest);
  const full = place(p, all);
  if (within(full)) return { ...full, cost: 0, meetsTarget: true };
  if (p.shards.some((s) => s.cost === null)) throw new Error('adaptive bitwidths under a latency target need the importance profile');
  const narrowest = Math.min(...p.choices);
  let lo = p.shards.reduce((a, s) => a + s.bytes(narrowest as ExpertBits), 0);
  let hi = full.totalBytes;
  let best = widthsUnder(p, lo).bits;
  for (let i = 0; i < 24 && hi - lo > 1; i++) {
    const mid = Math.floor((lo + hi) / 2);
    const w = widthsUnder(p, mid).bits;
    if (within(place(p, w))) {
      best = w;
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return finish(best);
}

/** Widths for an accuracy-only comparison: the profiled knapsack under a total-bytes cap (no residency, no latency). */
export function widthsForBytes(
  p: Omit<PlanProblem, 'budgetBytes' | 'preloadBytes' | 'targetMsPerToken' | 'hardware' | 'fixedBits'>,
  cap: number,
): { bits: ExpertBits[]; cost: number } {
  return widthsUnder(
    { ...p, fixedBits: null, budgetBytes: 0, preloadBytes: 0, targetMsPerToken: 0, hardware: { computeMsPerLayer: 1, readBytesPerMs: 1 } },
    cap,
  );
}
