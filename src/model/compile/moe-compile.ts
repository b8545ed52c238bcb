/**
 * Compiles an MoE checkpoint (mixtral, qwen2_moe, qwen3_moe): non-expert weights into one
 * weights.bin shared by the per-layer graphs and the head graph (kept resident by
 * the runner), and every routed expert into its own files, one per bitwidth
 * (fp32 raw, int8 / int4 / int2 as self-contained ONNX graphs), so an expert can be
 * read, checked and dropped on its own. moe-manifest.json lists every expert file
 * with its byte length and CRC-32, so a truncated or corrupted file is caught when
 * it is loaded, naming the file. The resident files are listed the same way and
 * checked on every load (cache-entry.ts, shared with compile-model.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ExternalDataFile } from '../onnx/graph-builder.js';
import type { ModelSpec, WeightSource } from '../spec.js';
import { expertTensorNames, routerTensorName, sharedExpertTensorNames } from '../tensor-layout.js';
import type { CompileOptions, CompileSource, CompiledModel } from './compile-model.js';
import type { WeightDtype } from './decoder-graph.js';
import { weightRangeBits } from './w8a8.js';
import { buildFp32ExpertGraph, buildMoeHeadGraph, buildMoeLayerGraph, buildQuantExpertGraph, type MoeStoredWeights } from './moe-graphs.js';
import { EXPERT_BITS, packBlockwise, type ExpertBits } from './moe-quantize.js';
import { concatRows, WeightWriter } from './graph-weights.js';
import { storeAttentionWeights } from './attention-block.js';
import { digestFiles, discardEntry, publishEntry, readEntry, temporaryEntryDir, type FileDigests } from './cache-entry.js';

/** Bump when the MoE graph or expert file layout changes. */
export const MOE_COMPILER_VERSION = 3;
export const MOE_MANIFEST = 'moe-manifest.json';
const QUANT_BLOCK_SIZE = 32;
const DEFAULT_QUANT_ACCURACY_LEVEL = 4;

export interface ExpertFile {
  readonly layer: number;
  readonly expert: number;
  readonly bits: ExpertBits;
  /** Relative to the compiled directory. */
  readonly file: string;
  readonly bytes: number;
  readonly crc32: number;
}

export interface MoeManifest {
  readonly compilerVersion: number;
  readonly key: string;
  readonly weightDtype: WeightDtype;
  /** Non-expert (always resident) weight bytes. */
  readonly weightBytes: number;
  readonly numLayers: number;
  readonly numExperts: number;
  readonly hidden: number;
  readonly expertIntermediate: number;
  readonly quantBlockSize: number;
  readonly quantAccuracyLevel: number;
  readonly layerGraphs: readonly string[];
  /** The same layers with attention statistics out / Quest page selection in (attention policies). */
  readonly statsLayerGraphs: readonly string[];
  readonly questLayerGraphs: readonly string[];
  readonly headGraph: string;
  readonly fp32ExpertGraph: string;
  readonly experts: readonly ExpertFile[];
  /** The resident files (weights, layer and head graphs) with length and checksum, verified on load; experts carry their own. */
  readonly files: FileDigests;
}

/** The manifest when it is this compiler's, for this key, and well-formed; otherwise why not. */
function acceptMoeManifest(m: unknown, key: string): { manifest: MoeManifest; files: FileDigests } | string {
  if (typeof m !== 'object' || m === null) return 'the manifest is not an object';
  const r = m as { readonly [K in keyof MoeManifest]?: unknown };
  if (r.compilerVersion !== MOE_COMPILER_VERSION) return `MoE compiler version ${String(r.compilerVersion)}, this is ${MOE_COMPILER_VERSION}`;
  if (r.key !== key) return 'the manifest is for another key';
  if (typeof r.weightBytes !== 'number' || !Array.isArray(r.experts) || typeof r.files !== 'object' || r.files === null)
    return 'the manifest lacks weightBytes, experts or files';
  return { manifest: r as MoeManifest, files: r.files as FileDigests };
}

export function expertFileName(layer: number, expert: number, bits: ExpertBits): string {
  return bits === 32 ? `experts/l${layer}.e${expert}.fp32.bin` : `experts/l${layer}.e${expert}.int${bits}.onnx`;
}

/** The routed expert's fused gate/up [2I, h] and down [h, I] in float32, as every expert file is made from. */
export function expertMatrices(spec: ModelSpec, weights: WeightSource, layer: number, expert: number): { gateUp: Float32Array; down: Float32Array } {
  const n = expertTensorNames(spec, layer, expert);
  return { gateUp: concatRows([weights.get(n.gate).data, weights.get(n.up).data]), down: weights.get(n.down).data };
}

function storeMoeWeights(spec: ModelSpec, weights: WeightSource, file: ExternalDataFile, weightDtype: WeightDtype): MoeStoredWeights {
  const moe = spec.moe;
  if (moe === undefined) throw new Error('internal: not an MoE spec');
  const out = new WeightWriter(file, weightDtype, QUANT_BLOCK_SIZE, weightRangeBits());
  const putF32 = (key: string, dims: number[], data: Float32Array): void => out.f32(key, dims, data);
  const putLinear = (key: string, data: Float32Array, n: number, k: number): void => out.linear(key, data, n, k);
  const { tensors, linears } = out;
  const h = spec.hiddenSize;
  const embed = weights.get('model.embed_tokens.weight');
  out.table('embed', embed.data, spec.vocabSize, h);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}`;
    putF32(`l${l}.in_norm`, [h], weights.get(`${p}.input_layernorm.weight`).data);
    putF32(`l${l}.post_norm`, [h], weights.get(`${p}.post_attention_layernorm.weight`).data);
    storeAttentionWeights(spec, weights, l, out);
    // The router stays fp32 whatever the weight dtype: a flipped top-k choice costs far more than its bytes.
    putF32(`l${l}.router`, [moe.numExperts, h], weights.get(routerTensorName(spec, l)).data);
    if (moe.sharedExpertIntermediateSize !== null) {
      const s = sharedExpertTensorNames(l);
      const si = moe.sharedExpertIntermediateSize;
      putLinear(`l${l}.shared_gate_up`, concatRows([weights.get(s.gate).data, weights.get(s.up).data]), 2 * si, h);
      putLinear(`l${l}.shared_down`, weights.get(s.down).data, h, si);
      putF32(`l${l}.shared_expert_gate`, [1, h], weights.get(s.sharedGate).data);
    }
  }
  putF32('final_norm', [h], weights.get('model.norm.weight').data);
  if (weightDtype === 'fp32' && spec.tieWordEmbeddings) linears.set('lm_head', { kind: 'fp32', weight: 'embed', n: spec.vocabSize, k: h });
  else out.linear('lm_head', spec.tieWordEmbeddings ? embed.data : weights.get('lm_head.weight').data, spec.vocabSize, h, true);
  return { tensors, linears };
}

function writeExpertFiles(spec: ModelSpec, weights: WeightSource, dir: string, accuracyLevel: number, onProgress?: (m: string) => void): ExpertFile[] {
  const moe = spec.moe;
  if (moe === undefined) throw new Error('internal: not an MoE spec');
  const h = spec.hiddenSize;
  const inter = moe.expertIntermediateSize;
  const out: ExpertFile[] = [];
  mkdirSync(join(dir, 'experts'), { recursive: true });
  for (let l = 0; l < spec.numLayers; l++) {
    for (let e = 0; e < moe.numExperts; e++) {
      const { gateUp, down } = expertMatrices(spec, weights, l, e);
      for (const bits of EXPERT_BITS) {
        let bytes: Uint8Array;
        if (bits === 32) {
          const all = concatRows([gateUp, down]);
          bytes = new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
        } else {
          bytes = buildQuantExpertGraph(
            packBlockwise(gateUp, 2 * inter, h, bits, QUANT_BLOCK_SIZE),
            packBlockwise(down, h, inter, bits, QUANT_BLOCK_SIZE),
            accuracyLevel,
          );
        }
        const file = expertFileName(l, e, bits);
        writeFileSync(join(dir, file), bytes);
        out.push({ layer: l, expert: e, bits, file, bytes: bytes.byteLength, crc32: crc32(bytes) });
      }
    }
    onProgress?.(`  layer ${l + 1}/${spec.numLayers}: ${moe.numExperts} experts written at ${EXPERT_BITS.join('/')} bits`);
  }
  return out;
}

function moeKey(source: CompileSource, weightDtype: WeightDtype, accuracyLevel: number): string {
  return createHash('sha256')
    .update(
      JSON.stringify({
        moe: MOE_COMPILER_VERSION,
        content: source.contentHash(),
        spec: source.spec,
        weightDtype,
        QUANT_BLOCK_SIZE,
        accuracyLevel,
        EXPERT_BITS,
        ...(weightDtype === 'w8a8' ? { channelBits: weightRangeBits() } : {}),
      }),
    )
    .digest('hex')
    .slice(0, 24);
}

export function readMoeManifest(dir: string): MoeManifest {
  const file = join(dir, MOE_MANIFEST);
  if (!existsSync(file)) throw new Error(`${file}: MoE manifest missing; recompile the model`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as MoeManifest;
  } catch (err) {
    throw new Error(`${file}: MoE manifest is not valid JSON; recompile the model`, { cause: err });
  }
}

export function compileMoeModel(source: CompileSource, options: CompileOptions): CompiledModel {
  const spec = source.spec;
  if (spec.moe === undefined) throw new Error('compileMoeModel: the model has no MoE layers');
  const accuracyLevel = options.quantAccuracyLevel ?? DEFAULT_QUANT_ACCURACY_LEVEL;
  const key = moeKey(source, options.weightDtype, accuracyLevel);
  const dir = join(options.cacheDir, key);
  const result = (weightBytes: number): CompiledModel => ({
    dir,
    spec,
    weightDtype: options.weightDtype,
    decoderPath: join(dir, MOE_MANIFEST),
    weightBytes,
  });
  const found = readEntry(dir, MOE_MANIFEST, (m) => acceptMoeManifest(m, key));
  if (found?.ok) {
    options.onProgress?.(`using compiled MoE graphs from ${dir}`);
    return result(found.manifest.weightBytes);
  }
  if (found) discardEntry(dir, found.problem, options.onProgress);
  mkdirSync(options.cacheDir, { recursive: true });
  const tmp = temporaryEntryDir(dir);
  mkdirSync(tmp, { recursive: true });
  try {
    options.onProgress?.(`compiling ${spec.architecture} (${spec.numLayers} layers x ${spec.moe.numExperts} experts, ${options.weightDtype}) into ${dir}`);
    const file = new ExternalDataFile(join(tmp, 'weights.bin'), 'weights.bin');
    let stored: MoeStoredWeights;
    try {
      stored = storeMoeWeights(spec, source.weights, file, options.weightDtype);
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
        writeFileSync(join(tmp, name), buildMoeLayerGraph(spec, stored, l, accuracyLevel, variant));
        list.push(name);
      }
    }
    writeFileSync(join(tmp, 'head.onnx'), buildMoeHeadGraph(spec, stored, accuracyLevel));
    writeFileSync(join(tmp, 'expert-fp32.onnx'), buildFp32ExpertGraph(spec.hiddenSize, spec.moe.expertIntermediateSize));
    const experts = writeExpertFiles(spec, source.weights, tmp, accuracyLevel, options.onProgress);
    let weightBytes = 0;
    for (const t of stored.tensors.values()) weightBytes += t.length;
    const manifest: MoeManifest = {
      compilerVersion: MOE_COMPILER_VERSION,
      key,
      weightDtype: options.weightDtype,
      weightBytes,
      numLayers: spec.numLayers,
      numExperts: spec.moe.numExperts,
      hidden: spec.hiddenSize,
      expertIntermediate: spec.moe.expertIntermediateSize,
      quantBlockSize: QUANT_BLOCK_SIZE,
      quantAccuracyLevel: accuracyLevel,
      layerGraphs,
      statsLayerGraphs,
      questLayerGraphs,
      headGraph: 'head.onnx',
      fp32ExpertGraph: 'expert-fp32.onnx',
      experts,
      files: digestFiles(tmp, ['weights.bin', ...layerGraphs, ...statsLayerGraphs, ...questLayerGraphs, 'head.onnx', 'expert-fp32.onnx']),
    };
    writeFileSync(join(tmp, MOE_MANIFEST), JSON.stringify(manifest));
    if (publishEntry(tmp, dir, (at) => readEntry(at, MOE_MANIFEST, (m) => acceptMoeManifest(m, key))?.ok === true) === 'existing') {
      options.onProgress?.(`another process compiled ${dir} first; using it`);
    }
    return result(weightBytes);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
