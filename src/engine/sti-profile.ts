/**
 * STI's importance profile: for every shard and every narrower width, the
 * accuracy cost of storing that one shard at that width with all others at
 * fp32, measured as the mean KL(p_fp32 || p_degraded) over the next-token
 * distributions of every calibration position (nats per token). One fp32 pass
 * records the hidden state entering each layer; a degraded shard of layer l then
 * only reruns layers l..L-1 from that state. The profile is saved in the STI
 * cache entry (sti-profile.json, keyed by the manifest), i.e. with the model;
 * `capserve model profile DIR` writes it ahead of serving.
 *
 * Also here: the whole-model evaluation the proof needs (KL and perplexity of a
 * plan's widths against fp32 on held-out text).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExpertBits } from '../model/compile/moe-quantize.js';
import { allocLayer, assembleInto, type LayerMatrices } from '../model/compile/sti-shards.js';
import type { ModelSpec } from '../model/spec.js';
import type { DecoderStepInputs } from '../runtime/decoder-session.js';
import type { StiRunner } from '../runtime/sti-runner.js';
import { calibrationInputs } from './moe-profile.js';

export const STI_PROFILE_FILE = 'sti-profile.json';

export interface ShardProfileEntry {
  readonly id: number;
  readonly layer: number;
  /** Mean KL (nats/token) at each width; 0 at 32. */
  readonly cost: Readonly<Partial<Record<ExpertBits, number>>>;
}

export interface StiProfile {
  readonly manifestKey: string;
  readonly tokens: number;
  /** Where the calibration text came from (a file path or 'built-in'). */
  readonly source: string;
  readonly widths: readonly ExpertBits[];
  readonly entries: readonly ShardProfileEntry[];
  readonly seconds: number;
}

/** One prefill of `ids` from position 0 with logits at every position. */
export function allLogitsInputs(spec: ModelSpec, ids: readonly number[]): DecoderStepInputs {
  return { ...calibrationInputs(spec, ids), logitCount: ids.length, logitIndex: BigInt64Array.from(ids.map((_, i) => BigInt(i))) };
}

function logSoftmax(row: Float32Array, off: number, V: number, out: Float64Array): void {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, row[off + v]!);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(row[off + v]! - max);
  const lse = max + Math.log(sum);
  for (let v = 0; v < V; v++) out[v] = row[off + v]! - lse;
}

/** Mean over positions of KL(p || q) from logits [N, V] (nats). */
export function meanKl(p: Float32Array, q: Float32Array, N: number, V: number): number {
  const lp = new Float64Array(V);
  const lq = new Float64Array(V);
  let total = 0;
  for (let n = 0; n < N; n++) {
    logSoftmax(p, n * V, V, lp);
    logSoftmax(q, n * V, V, lq);
    let kl = 0;
    for (let v = 0; v < V; v++) kl += Math.exp(lp[v]!) * (lp[v]! - lq[v]!);
    total += kl;
  }
  return total / N;
}

/** Perplexity of `ids[1..]` under logits [N, V] of positions 0..N-2. */
export function perplexity(logits: Float32Array, ids: readonly number[], V: number): number {
  const lp = new Float64Array(V);
  let nll = 0;
  for (let n = 0; n + 1 < ids.length; n++) {
    logSoftmax(logits, n * V, V, lp);
    nll -= lp[ids[n + 1]!]!;
  }
  return Math.exp(nll / Math.max(1, ids.length - 1));
}

/** Every layer's matrices with each shard at `bits(id)`, read from the shard files. */
export async function layerWeights(runner: StiRunner, spec: ModelSpec, bits: (id: number) => ExpertBits): Promise<LayerMatrices[]> {
  const out: LayerMatrices[] = [];
  for (let l = 0; l < spec.numLayers; l++) {
    const bytes = new Map<number, { bits: ExpertBits; bytes: Uint8Array }>();
    for (const id of runner.shardsOf(l)) bytes.set(id, { bits: bits(id), bytes: await runner.store.read(id, bits(id)) });
    out.push(runner.assemble(l, (id) => bytes.get(id) ?? { bits: 32, bytes: new Uint8Array() }, allocLayer(spec)));
  }
  return out;
}

/** Logits [N, V] of one prefill of `inputs` through the given matrices, recording the hidden state entering each layer. */
async function forwardWith(
  runner: StiRunner,
  inputs: DecoderStepInputs,
  weights: readonly LayerMatrices[],
  from = 0,
  hiddenIn: (Float32Array | null)[] = [],
  record = false,
): Promise<Float32Array> {
  let hidden = from === 0 ? null : (hiddenIn[from] ?? null);
  for (let l = from; l < weights.length; l++) {
    if (record) hiddenIn[l] = hidden;
    const m = weights[l];
    if (m === undefined) throw new Error('unreachable');
    hidden = (await runner.layer(null, l, inputs, hidden, m)).hidden;
  }
  if (hidden === null) throw new Error('unreachable: model without layers');
  return runner.head(hidden, inputs);
}

/** Full-precision logits and a plan's logits on `ids`: mean KL and both perplexities. */
export async function evaluateWidths(
  runner: StiRunner,
  spec: ModelSpec,
  ids: readonly number[],
  bits: (id: number) => ExpertBits,
  full?: { weights: LayerMatrices[]; logits: Float32Array },
): Promise<{ kl: number; ppl: number; pplFull: number; full: { weights: LayerMatrices[]; logits: Float32Array } }> {
  const inputs = allLogitsInputs(spec, ids);
  const ref =
    full ??
    (await (async () => {
      const weights = await layerWeights(runner, spec, () => 32);
      return { weights, logits: (await forwardWith(runner, inputs, weights)).slice() };
    })());
  const logits = await forwardWith(runner, inputs, await layerWeights(runner, spec, bits));
  const V = spec.vocabSize;
  return { kl: meanKl(ref.logits, logits, ids.length, V), ppl: perplexity(logits, ids, V), pplFull: perplexity(ref.logits, ids, V), full: ref };
}

export function readStiProfile(dir: string, manifestKey: string): StiProfile | null {
  const file = join(dir, STI_PROFILE_FILE);
  if (!existsSync(file)) return null;
  try {
    const p = JSON.parse(readFileSync(file, 'utf8')) as StiProfile;
    return p.manifestKey === manifestKey && Array.isArray(p.entries) ? p : null;
  } catch {
    return null;
  }
}

/** Profiles every shard at every width of `widths` below 32 and saves the profile with the model. */
export async function profileShards(
  runner: StiRunner,
  spec: ModelSpec,
  dir: string,
  ids: readonly number[],
  widths: readonly ExpertBits[],
  source: string,
  onProgress?: (m: string) => void,
): Promise<StiProfile> {
  const t0 = performance.now();
  const quant = [...new Set(widths)].filter((b) => b !== 32).sort((a, b) => b - a);
  const inputs = allLogitsInputs(spec, ids);
  const full = await layerWeights(runner, spec, () => 32);
  const hiddenIn: (Float32Array | null)[] = [];
  const ref = (await forwardWith(runner, inputs, full, 0, hiddenIn, true)).slice();
  const V = spec.vocabSize;
  const entries: ShardProfileEntry[] = [];
  for (let l = 0; l < spec.numLayers; l++) {
    const original = full[l];
    if (original === undefined) throw new Error('unreachable');
    for (const id of runner.shardsOf(l)) {
      const cost: Partial<Record<ExpertBits, number>> = { 32: 0 };
      for (const b of quant) {
        const bytes = await runner.store.read(id, b);
        const degraded: LayerMatrices = { qkv: original.qkv.slice(), o: original.o.slice(), gateUp: original.gateUp.slice(), down: original.down.slice() };
        const shard = runner.manifest.shards[id];
        if (shard === undefined) throw new Error('unreachable');
        assembleInto(spec, shard, b, bytes, degraded);
        full[l] = degraded;
        cost[b] = meanKl(ref, await forwardWith(runner, inputs, full, l, hiddenIn), ids.length, V);
        full[l] = original;
      }
      entries.push({ id, layer: l, cost });
    }
    onProgress?.(`  layer ${l + 1}/${spec.numLayers} profiled`);
  }
  const profile: StiProfile = {
    manifestKey: runner.manifest.key,
    tokens: ids.length,
    source,
    widths: quant,
    entries,
    seconds: (performance.now() - t0) / 1000,
  };
  try {
    const file = join(dir, STI_PROFILE_FILE);
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(profile));
    renameSync(tmp, file);
  } catch {
    // A read-only cache directory only costs re-profiling next time.
  }
  return profile;
}
