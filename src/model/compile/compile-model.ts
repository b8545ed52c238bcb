/**
 * Turns a checkpoint into ONNX graphs on disk, cached by a hash of the weights,
 * the config and the compile options. A cache entry is a directory holding one
 * shared weights.bin and the decoder graph (every variant in one graph); its manifest records each file's
 * length and checksum, checked on every load (cache-entry.ts: built in a
 * temporary directory and renamed into place; a broken entry is rebuilt).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExternalDataFile } from '../onnx/graph-builder.js';
import type { ModelSpec, WeightSource } from '../spec.js';
import type { KvDtype } from '../step-io.js';
import { buildDecoderGraph, storeDecoderWeights, type WeightDtype } from './decoder-graph.js';
import { compileMoeModel } from './moe-compile.js';
import { weightRangeBits } from './w8a8.js';
import { digestFiles, discardEntry, publishEntry, readEntry, temporaryEntryDir, type FileDigests } from './cache-entry.js';

/** Bump when the graph layout changes so stale cache entries are not reused. */
export const COMPILER_VERSION = 21;

export interface CompileSource {
  readonly spec: ModelSpec;
  readonly weights: WeightSource;
  contentHash(): string;
}

export interface CompileOptions {
  readonly cacheDir: string;
  readonly weightDtype: WeightDtype;
  /**
   * MatMulNBits accuracy_level for int8/int4 weights: 4 (default) lets onnxruntime
   * quantize activations to int8 for its fast integer kernels; 0 keeps fp32
   * activations (slower, only the weight error remains).
   */
  readonly quantAccuracyLevel?: 0 | 4;
  /** MatMulNBits block size along K for int8/int4 weights (default: defaultQuantBlockSize; quant-bench measures the others). */
  readonly quantBlockSize?: QuantBlockSize;
  /**
   * 'all' (default): the decoder graph serves every variant, switched per step.
   * 'plain': the plain variant alone, as graphs were before variants shared one
   * session (benchmarks compare the two in one run).
   */
  readonly variants?: 'all' | 'plain';
  /** The KV cache's storage dtype the dense graph's past inputs are compiled for (default fp32; MoE graphs are fp32 only). */
  readonly kvDtype?: KvDtype;
  readonly onProgress?: (message: string) => void;
}

export interface CompiledModel {
  readonly dir: string;
  readonly spec: ModelSpec;
  readonly weightDtype: WeightDtype;
  /**
   * The decoder graph with every variant (plain, attention statistics, Quest
   * selection) switched per step on its `variant` input: one session, one copy
   * of the weights. For an MoE model (spec.moe set): its moe-manifest.json (see moe-compile.ts).
   */
  readonly decoderPath: string;
  readonly weightBytes: number;
}

interface Manifest {
  readonly compilerVersion: number;
  readonly key: string;
  readonly weightDtype: WeightDtype;
  readonly weightBytes: number;
  /** Every file of the entry with its length and checksum, verified on load. */
  readonly files: FileDigests;
}

const MANIFEST = 'manifest.json';

/** The manifest when it is this compiler's, for this key, and well-formed; otherwise why not. */
function acceptManifest(m: unknown, key: string): { manifest: Manifest; files: FileDigests } | string {
  if (typeof m !== 'object' || m === null) return 'the manifest is not an object';
  const r = m as { readonly [K in keyof Manifest]?: unknown };
  if (r.compilerVersion !== COMPILER_VERSION) return `compiler version ${String(r.compilerVersion)}, this is ${COMPILER_VERSION}`;
  if (r.key !== key) return 'the manifest is for another key';
  if (typeof r.weightBytes !== 'number' || typeof r.files !== 'object' || r.files === null) return 'the manifest lacks weightBytes or files';
  return { manifest: r as Manifest, files: r.files as FileDigests };
}

export type QuantBlockSize = 16 | 32 | 64 | 128;
/**
 * MatMulNBits block size per dtype, by quant-bench on the 135m preset (accuracy_level 4, interleaved
 * with fp32 in one process). int8: 64, decode 1.09-1.21x faster than 32 in two runs at about the same
 * error (mean KL vs fp32 0.0031 vs 0.0029); 64 divides 576 and 1536, so SmolLM-shaped matrices need no
 * padding (128 pads K = 576 to 640). int4: 32; 64 decoded 1.18-1.41x faster but its error on the tiny
 * model (0.301 of the logit range) leaves engine-reference's documented int4 tolerance (0.30).
 */
export function defaultQuantBlockSize(weightDtype: WeightDtype): QuantBlockSize {
  return weightDtype === 'int8' || weightDtype === 'w8a8' ? 64 : 32;
}
const DEFAULT_QUANT_ACCURACY_LEVEL = 4;

export function compileKey(
  source: CompileSource,
  weightDtype: WeightDtype,
  quantAccuracyLevel: number,
  variants: 'all' | 'plain' = 'all',
  quantBlockSize: QuantBlockSize = defaultQuantBlockSize(weightDtype),
  kvDtype: KvDtype = 'fp32',
): string {
  return createHash('sha256')
    .update(
      JSON.stringify({
        v: COMPILER_VERSION,
        content: source.contentHash(),
        spec: source.spec,
        weightDtype,
        QUANT_BLOCK_SIZE: quantBlockSize,
        quantAccuracyLevel,
        variants,
        // Only a non-default KV dtype enters the key: fp32 graphs keep the keys they had.
        ...(kvDtype === 'fp32' ? {} : { kvDtype }),
        // w8a8 weights are 7-bit on CPUs whose integer kernel could saturate (w8a8.ts).
        ...(weightDtype === 'w8a8' ? { channelBits: weightRangeBits() } : {}),
      }),
    )
    .digest('hex')
    .slice(0, 24);
}

export function compileModel(source: CompileSource, options: CompileOptions): CompiledModel {
  if (source.spec.moe !== undefined) return compileMoeModel(source, options);
  const quantAccuracyLevel = options.quantAccuracyLevel ?? DEFAULT_QUANT_ACCURACY_LEVEL;
  const variants = options.variants ?? 'all';
  const quantBlockSize = options.quantBlockSize ?? defaultQuantBlockSize(options.weightDtype);
  const kvDtype = options.kvDtype ?? 'fp32';
  const key = compileKey(source, options.weightDtype, quantAccuracyLevel, variants, quantBlockSize, kvDtype);
  const dir = join(options.cacheDir, key);
  const result = (weightBytes: number): CompiledModel => ({
    dir,
    spec: source.spec,
    weightDtype: options.weightDtype,
    decoderPath: join(dir, 'decoder.onnx'),
    weightBytes,
  });
  const found = readEntry(dir, MANIFEST, (m) => acceptManifest(m, key));
  if (found?.ok) {
    options.onProgress?.(`using compiled graphs from ${dir}`);
    return result(found.manifest.weightBytes);
  }
  if (found) discardEntry(dir, found.problem, options.onProgress);
  mkdirSync(options.cacheDir, { recursive: true });
  const tmp = temporaryEntryDir(dir);
  mkdirSync(tmp, { recursive: true });
  try {
    const file = new ExternalDataFile(join(tmp, 'weights.bin'), 'weights.bin');
    const layers = source.spec.numLayers;
    options.onProgress?.(`compiling ${source.spec.architecture} (${layers} layers, ${options.weightDtype}) into ${dir}`);
    let stored;
    try {
      stored = storeDecoderWeights(
        source.spec,
        source.weights,
        file,
        { weightDtype: options.weightDtype, quantBlockSize, channelBits: weightRangeBits() },
        (l) => options.onProgress?.(`  layer ${l + 1}/${layers} written`),
      );
    } finally {
      file.close();
    }
    const common = { weightDtype: options.weightDtype, quantBlockSize, quantAccuracyLevel };
    writeFileSync(join(tmp, 'decoder.onnx'), buildDecoderGraph(source.spec, stored, { ...common, variants, kvDtype }));
    let weightBytes = 0;
    for (const t of stored.tensors.values()) weightBytes += t.length;
    const files = digestFiles(tmp, ['weights.bin', 'decoder.onnx']);
    const manifest: Manifest = { compilerVersion: COMPILER_VERSION, key, weightDtype: options.weightDtype, weightBytes, files };
    writeFileSync(join(tmp, MANIFEST), JSON.stringify(manifest, null, 2));
    if (publishEntry(tmp, dir, (at) => readEntry(at, MANIFEST, (m) => acceptManifest(m, key))?.ok === true) === 'existing') {
      options.onProgress?.(`another process compiled ${dir} first; using it`);
    }
    return result(weightBytes);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
