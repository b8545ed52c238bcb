/**
 * Measures each expert's importance on calibration tokens, for the bitwidth
 * adaptation (policies/expert-offload/bitwidth.ts documents the cost it feeds).
 * One fp32 forward pass over the tokens; at each layer, every routed expert runs
 * on the rows routed to it at fp32 and at each quantized width (loaded outside
 * the cache), and cost_e(b) accumulates w^2 * ||y_b - y_32||^2 over those rows,
 * normalised by the layer's total MoE output energy. The profile is cached as
 * JSON next to the compiled model, keyed by the tokens and widths.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExpertBits } from '../model/compile/moe-quantize.js';
import type { ModelSpec } from '../model/spec.js';
import type { ExpertProfileEntry } from '../policies/expert-offload/bitwidth.js';
import type { DecoderStepInputs } from '../runtime/decoder-session.js';
import type { MoeRunner } from '../runtime/moe-runner.js';

export interface ExpertProfile {
  readonly key: string;
  readonly tokens: number;
  readonly entries: readonly ExpertProfileEntry[];
}

/** One prefill chunk of `ids` from position 0 with an empty cache. */
export function calibrationInputs(spec: ModelSpec, ids: readonly number[]): DecoderStepInputs {
  const T = ids.length;
  const newBias = new Float32Array(T * T);
  for (let q = 0; q < T; q++) {
    for (let k = 0; k < T; k++) {
      const blocked = k > q || (spec.slidingWindow !== null && q - k >= spec.slidingWindow);
      newBias[q * T + k] = blocked ? -Infinity : 0;
    }
  }
  // As the engine does (step-inputs.ts): an empty past is one blocked dummy entry, since onnxruntime mishandles zero-length past dimensions.
  const zeros = new Float32Array(spec.numKvHeads * spec.headDim);
  const empty = { keys: zeros, values: zeros, capacity: 1, bias: Float32Array.of(-Infinity), biasHeads: 1, biasRows: 1 };
  return {
    batch: 1,
    newTokens: T,
    logitCount: 1,
    inputIds: BigInt64Array.from(ids.map((t) => BigInt(t))),
    positionIds: BigInt64Array.from(ids.map((_, i) => BigInt(i))),
    newBias,
    logitIndex: BigInt64Array.of(BigInt(T - 1)),
    layers: Array.from({ length: spec.numLayers }, () => empty),
    attnWindow: null,
  };
}

function profileKey(ids: readonly number[], widths: readonly ExpertBits[], manifestKey: string): string {
  return createHash('sha256')
    .update(JSON.stringify({ v: 1, manifestKey, ids, widths }))
    .digest('hex')
    .slice(0, 16);
}

/**
 * Runs the profile (or reads it from `dir`). Leaves the runner with every expert
 * at fp32 and its counters reset; the caller then applies an assignment.
 */
export async function profileExperts(
  runner: MoeRunner,
  spec: ModelSpec,
  dir: string,
  ids: readonly number[],
  widths: readonly ExpertBits[],
): Promise<ExpertProfile> {
  const quantWidths = [...new Set(widths)].filter((b) => b !== 32).sort((a, b) => b - a);
  const key = profileKey(ids, quantWidths, runner.manifest.key);
  const file = join(dir, `expert-profile-${key}.json`);
  if (existsSync(file)) {
    try {
      const cached = JSON.parse(readFileSync(file, 'utf8')) as ExpertProfile;
      if (cached.key === key) return cached;
    } catch {
      // A damaged cache entry is recomputed below.
    }
  }
  const moe = spec.moe;
  if (moe === undefined) throw new Error('profileExperts: not an MoE model');
  const h = spec.hiddenSize;
  const cost = new Map<string, { tokens: number; cost: Partial<Record<ExpertBits, number>> }>();
  runner.configure(() => 32);
  await runner.forward(calibrationInputs(spec, ids), async (layer, moeIn, rows, groups, store) => {
    const out = new Float64Array(rows * h);
    const layerCost: Array<{ expert: number; tokens: number; err: Map<ExpertBits, number> }> = [];
    for (const g of groups) {
      const M = g.rows.length;
      const x = new Float32Array(M * h);
      g.rows.forEach((r, m) => x.set(moeIn.subarray(r * h, (r + 1) * h), m * h));
      const ref = await store.loadDetached(layer, g.expert, 32);
      let y32: Float32Array;
      try {
        y32 = (await store.run(ref.handle, x, M)).slice();
      } finally {
        ref.release();
      }
      g.rows.forEach((r, m) => {
        const w = g.weights[m]!;
        for (let i = 0; i < h; i++) out[r * h + i] = out[r * h + i]! + w * y32[m * h + i]!;
      });
      const err = new Map<ExpertBits, number>();
      for (const b of quantWidths) {
        const q = await store.loadDetached(layer, g.expert, b);
        try {
          const yb = await store.run(q.handle, x, M);
          let e = 0;
          g.rows.forEach((_, m) => {
            const w = g.weights[m]!;
            let d2 = 0;
            for (let i = 0; i < h; i++) {
              const d = yb[m * h + i]! - y32[m * h + i]!;
              d2 += d * d;
            }
            e += w * w * d2;
          });
          err.set(b, e);
        } finally {
          q.release();
        }
      }
      layerCost.push({ expert: g.expert, tokens: M, err });
    }
    let energy = 0;
    for (const v of out) energy += v * v;
    const norm = energy > 0 ? energy : 1;
    for (const c of layerCost) {
      const entry: Partial<Record<ExpertBits, number>> = { 32: 0 };
      for (const [b, e] of c.err) entry[b] = e / norm;
      cost.set(`${layer}:${c.expert}`, { tokens: c.tokens, cost: entry });
    }
  });
  const entries: ExpertProfileEntry[] = [];
  for (let l = 0; l < spec.numLayers; l++) {
    for (let e = 0; e < moe.numExperts; e++) {
      const c = cost.get(`${l}:${e}`);
      const zero: Partial<Record<ExpertBits, number>> = { 32: 0 };
      for (const b of quantWidths) zero[b] = 0;
      entries.push({ layer: l, expert: e, tokens: c?.tokens ?? 0, cost: c?.cost ?? zero });
    }
  }
  const profile: ExpertProfile = { key, tokens: ids.length, entries };
  try {
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(profile));
    renameSync(tmp, file);
  } catch {
    // A read-only cache directory only costs re-profiling next time.
  }
  runner.resetStats();
  return profile;
}
