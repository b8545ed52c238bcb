/**
 * Compiles a dense checkpoint for elastic weights (STI): a cache entry beside
 * the dense model's (same cache directory, its own key) holding
 *   weights.bin                the always-resident weights (embeddings, norms, biases, lm_head), fp32
 *   layer-L[.stats|.quest].onnx per-layer graphs taking the shardable matrices as inputs (sti-graphs.ts)
 *   head.onnx
 *   shards/l{L}.{attn|mlp}{i}.{fp32|int8|int4|int2}.bin   every shard at every width (sti-shards.ts)
 *   sti-manifest.json          the shards with byte length and CRC-32 (checked when read, by the
 *                              shared shard store), and the resident files' digests (checked on load)
 * The importance profile (`capserve model profile`) is saved into the entry too.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ExternalDataFile } from '../onnx/graph-builder.js';
import type { ModelSpec, WeightSource } from '../spec.js';
import { normWeight } from './attention-block.js';
import type { CompileSource } from './compile-model.js';
import { concatRows, WeightWriter } from './graph-weights.js';
import type { MoeStoredWeights } from './moe-graphs.js';
import type { ExpertBits } from './moe-quantize.js';
import { buildStiHeadGraph, buildStiLayerGraph } from './sti-graphs.js';
import { encodeShard, extractShard, SHARD_BITS, shardLayout, type LayerMatrices, type ShardDesc, type ShardFile } from './sti-shards.js';
import { digestFiles, discardEntry, publishEntry, readEntry, temporaryEntryDir, type FileDigests } from './cache-entry.js';

/** Bump when the STI graph or shard layout changes. */
export const STI_COMPILER_VERSION = 2;
export const STI_MANIFEST = 'sti-manifest.json';

export interface StiShardEntry extends ShardDesc {
  /** Position in the manifest's shard list: the store's key. */
  readonly id: number;
  /** One file per width, keyed by bits. */
  readonly files: Readonly<Record<string, ShardFile>>;
}

export interface StiManifest {
  readonly compilerVersion: number;
  readonly key: string;
  readonly numLayers: number;
  /** Always-resident weight bytes (weights.bin). */
  readonly residentWeightBytes: number;
  readonly layerGraphs: readonly string[];
  readonly statsLayerGraphs: readonly string[];
  readonly questLayerGraphs: readonly string[];
  readonly headGraph: string;
  readonly shards: readonly StiShardEntry[];
  readonly files: FileDigests;
}

export interface StiCompiled {
  readonly dir: string;
  readonly manifest: StiManifest;
}

function acceptStiManifest(m: unknown, key: string): { manifest: StiManifest; files: FileDigests } | string {
  if (typeof m !== 'object' || m === null) return 'the manifest is not an object';
  const r = m as { readonly [K in keyof StiManifest]?: unknown };
  if (r.compilerVersion !== STI_COMPILER_VERSION) return `STI compiler version ${String(r.compilerVersion)}, this is ${STI_COMPILER_VERSION}`;
  if (r.key !== key) return 'the manifest is for another key';
  if (!Array.isArray(r.shards) || typeof r.files !== 'object' || r.files === null) return 'the manifest lacks shards or files';
  return { manifest: r as StiManifest, files: r.files as FileDigests };
}

export function stiKey(source: CompileSource): string {
  return createHash('sha256')
    .update(JSON.stringify({ sti: STI_COMPILER_VERSION, content: source.contentHash(), spec: source.spec, SHARD_BITS }))
    .digest('hex')
    .slice(0, 24);
}

/** The layer's four shardable matrices from the checkpoint, fused as the dense graph fuses them. */
export function layerMatrices(spec: ModelSpec, weights: WeightSource, layer: number): LayerMatrices {
  const p = `model.layers.${layer}`;
  const qkv = spec.packedProjections
    ? weights.get(`${p}.self_attn.qkv_proj.weight`).data
    : concatRows(['q', 'k', 'v'].map((x) => weights.get(`${p}.self_attn.${x}_proj.weight`).data));
  const gateUp = spec.packedProjections
    ? weights.get(`${p}.mlp.gate_up_proj.weight`).data
    : concatRows([weights.get(`${p}.mlp.gate_proj.weight`).data, weights.get(`${p}.mlp.up_proj.weight`).data]);
  return { qkv, o: weights.get(`${p}.self_attn.o_proj.weight`).data, gateUp, down: weights.get(`${p}.mlp.down_proj.weight`).data };
}

function storeResident(spec: ModelSpec, weights: WeightSource, file: ExternalDataFile): MoeStoredWeights {
  const out = new WeightWriter(file, 'fp32', 32);
  const h = spec.hiddenSize;
  const qDim = spec.numHeads * spec.headDim;
  const kvDim = spec.numKvHeads * spec.headDim;
  const embed = weights.get('model.embed_tokens.weight');
  out.f32('embed', [spec.vocabSize, h], embed.data);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}`;
    const norm = (name: string): Float32Array => normWeight(spec, weights.get(`${p}.${name}.weight`).data);
    out.f32(`l${l}.in_norm`, [h], norm('input_layernorm'));
    if (spec.sandwichNorms) {
      out.f32(`l${l}.attn_out_norm`, [h], norm('post_attention_layernorm'));
      out.f32(`l${l}.post_norm`, [h], norm('pre_feedforward_layernorm'));
      out.f32(`l${l}.mlp_out_norm`, [h], norm('post_feedforward_layernorm'));
    } else {
      out.f32(`l${l}.post_norm`, [h], norm('post_attention_layernorm'));
    }
    if (spec.attentionBias) {
      out.f32(`l${l}.qkv_bias`, [qDim + 2 * kvDim], concatRows(['q', 'k', 'v'].map((x) => weights.get(`${p}.self_attn.${x}_proj.bias`).data)));
    }
    if (spec.qkNorm) {
      out.f32(`l${l}.q_norm`, [spec.headDim], normWeight(spec, weights.get(`${p}.self_attn.q_norm.weight`).data));
      out.f32(`l${l}.k_norm`, [spec.headDim], normWeight(spec, weights.get(`${p}.self_attn.k_norm.weight`).data));
    }
    if (spec.outputBias) out.f32(`l${l}.o_bias`, [h], weights.get(`${p}.self_attn.o_proj.bias`).data);
  }
  out.f32('final_norm', [h], normWeight(spec, weights.get('model.norm.weight').data));
  if (spec.tieWordEmbeddings) out.linears.set('lm_head', { kind: 'fp32', weight: 'embed', n: spec.vocabSize, k: h });
  else out.linear('lm_head', weights.get('lm_head.weight').data, spec.vocabSize, h);
  return { tensors: out.tensors, linears: out.linears };
}

export function shardFileName(s: ShardDesc, bits: ExpertBits): string {
  return `shards/l${s.layer}.${s.kind}${s.index}.${bits === 32 ? 'fp32' : `int${bits}`}.bin`;
}

function writeShards(spec: ModelSpec, weights: WeightSource, dir: string, onProgress?: (m: string) => void): StiShardEntry[] {
  mkdirSync(join(dir, 'shards'), { recursive: true });
  const layout = shardLayout(spec);
  const out: StiShardEntry[] = [];
  let matrices: LayerMatrices | null = null;
  let matricesLayer = -1;
  layout.forEach((s, id) => {
    if (s.layer !== matricesLayer) {
      matrices = layerMatrices(spec, weights, s.layer);
      matricesLayer = s.layer;
    }
    if (matrices === null) throw new Error('unreachable');
    const parts = extractShard(spec, s, matrices);
    const files: Record<string, ShardFile> = {};
    for (const bits of SHARD_BITS) {
      const bytes = encodeShard(spec, s, parts, bits);
      const file = shardFileName(s, bits);
      writeFileSync(join(dir, file), bytes);
      files[String(bits)] = { file, bytes: bytes.byteLength, crc32: crc32(bytes) };
    }
    out.push({ ...s, id, files });
    if (id + 1 === layout.length || layout[id + 1]?.layer !== s.layer)
      onProgress?.(`  layer ${s.layer + 1}/${spec.numLayers}: shards written at ${SHARD_BITS.join('/')} bits`);
  });
  return out;
}

export function readStiManifest(dir: string): StiManifest {
  const file = join(dir, STI_MANIFEST);
  if (!existsSync(file)) throw new Error(`${file}: STI manifest missing; recompile the model`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StiManifest;
  } catch (err) {
    throw new Error(`${file}: STI manifest is not valid JSON; recompile the model`, { cause: err });
  }
}

/** The STI entry for `source` under `cacheDir`, compiled unless a sound one exists. */
export function compileSti(source: CompileSource, options: { readonly cacheDir: string; readonly onProgress?: (m: string) => void }): StiCompiled {
  const spec = source.spec;
  if (spec.moe !== undefined) throw new Error('elastic weights (STI) shard dense models; this model has MoE layers (use expert offload)');
  const key = stiKey(source);
  const dir = join(options.cacheDir, key);
  const found = readEntry(dir, STI_MANIFEST, (m) => acceptStiManifest(m, key));
  if (found?.ok) {
    options.onProgress?.(`using STI shards from ${dir}`);
    return { dir, manifest: found.manifest };
  }
  if (found) discardEntry(dir, found.problem, options.onProgress);
  mkdirSync(options.cacheDir, { recursive: true });
  const tmp = temporaryEntryDir(dir);
  mkdirSync(tmp, { recursive: true });
  try {
    options.onProgress?.(`compiling STI shards of ${spec.architecture} (${spec.numLayers} layers) into ${dir}`);
    const file = new ExternalDataFile(join(tmp, 'weights.bin'), 'weights.bin');
    let stored: MoeStoredWeights;
    try {
      stored = storeResident(spec, source.weights, file);
    } finally {
      file.close();
    }
    const layerGraphs: string[] = [];
    const statsLayerGraphs: string[] = [];
    const questLayerGraphs: string[] = [];
    for (let l = 0; l < spec.numLayers; l++) {
      for (const [variant, list, name] of [
        ['plain', layerGraphs, `layer-${l}.onnx`],
        ['stats', statsLayerGraphs, `layer-${l}.stats.onnx`],
        ['quest', questLayerGraphs, `layer-${l}.quest.onnx`],
      ] as const) {
        writeFileSync(join(tmp, name), buildStiLayerGraph(spec, stored, l, variant));
        list.push(name);
      }
    }
    writeFileSync(join(tmp, 'head.onnx'), buildStiHeadGraph(spec, stored));
    const shards = writeShards(spec, source.weights, tmp, options.onProgress);
    let residentWeightBytes = 0;
    for (const t of stored.tensors.values()) residentWeightBytes += t.length;
    const manifest: StiManifest = {
      compilerVersion: STI_COMPILER_VERSION,
      key,
      numLayers: spec.numLayers,
      residentWeightBytes,
      layerGraphs,
      statsLayerGraphs,
      questLayerGraphs,
      headGraph: 'head.onnx',
      shards,
      files: digestFiles(tmp, ['weights.bin', ...layerGraphs, ...statsLayerGraphs, ...questLayerGraphs, 'head.onnx']),
    };
    writeFileSync(join(tmp, STI_MANIFEST), JSON.stringify(manifest));
    if (publishEntry(tmp, dir, (at) => readEntry(at, STI_MANIFEST, (m) => acceptStiManifest(m, key))?.ok === true) === 'existing') {
      options.onProgress?.(`another process compiled ${dir} first; using it`);
    }
    return { dir, manifest };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
