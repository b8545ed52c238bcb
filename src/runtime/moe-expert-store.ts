/**
 * Where routed experts come from at run time: their per-expert files (written by
 * model/compile/moe-compile.ts), held in the shared weight store (shard-store.ts:
 * positioned reads on libuv's threadpool, length and CRC-32 checks, a cache
 * bounded in file bytes, prefetch), keyed layer * numExperts + expert. This file
 * is the experts' codec: fp32 experts become two Float32Array views fed to the
 * shared fp32 expert graph; quantized experts become their own session (see
 * moe-graphs.ts for why).
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ExpertFile, MoeManifest } from '../model/compile/moe-compile.js';
import { MOE_IO } from '../model/compile/moe-graphs.js';
import type { ExpertBits } from '../model/compile/moe-quantize.js';
import type { CachePolicy } from '../kv/expert-cache.js';
import { ShardStore, type ShardCodec, type ShardStoreStats } from './shard-store.js';

export type MoeRunnerErrorCode = 'expert_file_missing' | 'expert_file_corrupt' | 'expert_run_failed';

export class MoeRunnerError extends Error {
  override readonly name = 'MoeRunnerError';
  constructor(
    readonly code: MoeRunnerErrorCode,
    /** The expert file involved, when there is one. */
    readonly file: string | null,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(file === null ? message : `${file}: ${message}`, options);
  }
}

export type ExpertHandle =
  { readonly kind: 'fp32'; readonly gateUp: Float32Array; readonly down: Float32Array } | { readonly kind: 'session'; readonly session: ort.InferenceSession };

export interface ExpertStoreOptions {
  readonly budgetBytes: number;
  readonly cachePolicy: CachePolicy;
  /** intra-op threads of the shared fp32 expert session; quantized expert sessions use 1 (no pool per expert). */
  readonly threads: number;
}

export interface ExpertStoreStats extends ShardStoreStats {
  expertCalls: number;
}

/** A set of experts acquired for one layer; release() unpins them and frees transient ones. */
export interface Acquired {
  readonly handles: ReadonlyMap<number, ExpertHandle>;
  release(): void;
}

const EXPERT_SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  enableCpuMemArena: false,
  enableMemPattern: false,
  // See moe-runner.ts: spinning pool threads starve the expert reads.
  extra: { 'session.intra_op.allow_spinning': '0' },
};

export class ExpertStore {
  private readonly store: ShardStore<ExpertHandle>;
  private readonly files = new Map<string, ExpertFile>();
  private expertCalls = 0;

  private constructor(
    dir: string,
    readonly manifest: MoeManifest,
    private readonly fp32Session: ort.InferenceSession,
    options: ExpertStoreOptions,
  ) {
    for (const f of manifest.experts) this.files.set(`${f.layer}:${f.expert}:${f.bits}`, f);
    const E = manifest.numExperts;
    const codec: ShardCodec<ExpertHandle> = {
      file: (key, bits) => this.entry(Math.floor(key / E), key % E, bits as ExpertBits),
      materialize: (key, bits, bytes) =>
        this.materialize(join(dir, this.entry(Math.floor(key / E), key % E, bits as ExpertBits).file), bits as ExpertBits, bytes),
      release: (h) => {
        if (h.kind === 'session') void h.session.release().catch(() => {});
      },
      describe: (key, bits) => `layer ${Math.floor(key / E)} expert ${key % E} (${bits}-bit)`,
      fail: (kind, path, message, cause) =>
        new MoeRunnerError(kind === 'missing' ? 'expert_file_missing' : 'expert_file_corrupt', path, message.replace(/^file for /, 'expert file for '), {
          cause,
        }),
    };
    this.store = new ShardStore(dir, codec, { budgetBytes: options.budgetBytes, cachePolicy: options.cachePolicy });
  }

  static async open(dir: string, manifest: MoeManifest, options: ExpertStoreOptions): Promise<ExpertStore> {
    const fp32Session = await ort.InferenceSession.create(join(dir, manifest.fp32ExpertGraph), {
      ...EXPERT_SESSION_OPTIONS,
      intraOpNumThreads: options.threads,
      enableCpuMemArena: true,
    });
    return new ExpertStore(dir, manifest, fp32Session, options);
  }

  get stats(): Readonly<ExpertStoreStats> {
    return { ...this.store.stats, expertCalls: this.expertCalls };
  }

  get budgetBytes(): number {
    return this.store.budgetBytes;
  }

  get residentBytes(): number {
    return this.store.residentBytes;
  }

  cachedKeys(): number[] {
    return this.store.cachedKeys();
  }

  key(layer: number, expert: number): number {
    return layer * this.manifest.numExperts + expert;
  }

  bitsOf(layer: number, expert: number): ExpertBits {
    return this.store.bitsOf(this.key(layer, expert)) as ExpertBits;
  }

  fileBytes(layer: number, expert: number, bits: ExpertBits): number {
    return this.entry(layer, expert, bits).bytes;
  }

  /** New widths or a new cache configuration: drops everything cached (in-flight reads finish unused). */
  reconfigure(assignment: (layer: number, expert: number) => ExpertBits, options?: Partial<ExpertStoreOptions>): void {
    const E = this.manifest.numExperts;
    const { threads: _threads, ...rest } = options ?? {};
    this.store.reconfigure((key) => assignment(Math.floor(key / E), key % E), rest);
  }

  resetStats(): void {
    this.store.resetStats();
    this.expertCalls = 0;
  }

  private entry(layer: number, expert: number, bits: ExpertBits): ExpertFile {
    const f = this.files.get(`${layer}:${expert}:${bits}`);
    if (!f)
      throw new MoeRunnerError(
        'expert_file_missing',
        null,
        `the MoE manifest lists no ${bits}-bit file for layer ${layer} expert ${expert}; recompile the model`,
      );
    return f;
  }

  private async materialize(path: string, bits: ExpertBits, bytes: Uint8Array): Promise<ExpertHandle> {
    if (bits === 32) {
      const inter = this.manifest.expertIntermediate;
      const h = this.manifest.hidden;
      const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      return { kind: 'fp32', gateUp: all.subarray(0, 2 * inter * h), down: all.subarray(2 * inter * h) };
    }
    try {
      return { kind: 'session', session: await ort.InferenceSession.create(bytes, EXPERT_SESSION_OPTIONS) };
    } catch (err) {
      throw new MoeRunnerError('expert_file_corrupt', path, `onnxruntime cannot load the expert graph (${(err as Error).message})`, { cause: err });
    }
  }

  /** Starts reading the given experts of `layer` if they are neither cached nor being read (never awaits). */
  prefetch(layer: number, experts: Iterable<number>): void {
    this.store.prefetch([...experts].map((e) => this.key(layer, e)));
  }

  /** Makes the experts of `layer` ready to run and pins them until release() (see ShardStore.acquire). */
  async acquire(layer: number, experts: readonly number[]): Promise<Acquired> {
    const got = await this.store.acquire(experts.map((e) => this.key(layer, e)));
    const handles = new Map<number, ExpertHandle>();
    for (const e of experts) {
      const h = got.values.get(this.key(layer, e));
      if (h === undefined) throw new Error(`internal: expert ${layer}:${e} not acquired`);
      handles.set(e, h);
    }
    return { handles, release: got.release };
  }

  /** y [M, h] = expert(x [M, h]). */
  async run(handle: ExpertHandle, x: Float32Array, rows: number): Promise<Float32Array> {
    const h = this.manifest.hidden;
    const inter = this.manifest.expertIntermediate;
    const feeds: Record<string, ort.Tensor> = { [MOE_IO.expertX]: new ort.Tensor('float32', x, [rows, h]) };
    let session: ort.InferenceSession;
    if (handle.kind === 'fp32') {
      feeds[MOE_IO.expertGateUp] = new ort.Tensor('float32', handle.gateUp, [2 * inter, h]);
      feeds[MOE_IO.expertDown] = new ort.Tensor('float32', handle.down, [h, inter]);
      session = this.fp32Session;
    } else {
      session = handle.session;
    }
    this.expertCalls += 1;
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await session.run(feeds);
    } catch (err) {
      throw new MoeRunnerError('expert_run_failed', null, `expert graph failed on x float32 [${rows}, ${h}] (${(err as Error).message})`, { cause: err });
    }
    const y = out[MOE_IO.expertY];
    if (!y || !(y.data instanceof Float32Array)) throw new MoeRunnerError('expert_run_failed', null, 'expert graph returned no float32 y');
    return y.data;
  }

  /** Loads one expert at a given width outside the cache (profiling); the caller releases the handle. */
  async loadDetached(layer: number, expert: number, bits: ExpertBits): Promise<{ handle: ExpertHandle; release: () => void }> {
    const { value, release } = await this.store.loadDetached(this.key(layer, expert), bits);
    return { handle: value, release };
  }

  /**
   * Preloads experts in the given order (default: layer by layer) while they fit,
   * skipping any that does not; each preloaded expert counts as one use for the
   * frequency policy.
   */
  async preload(order?: ReadonlyArray<{ readonly layer: number; readonly expert: number }>): Promise<void> {
    const E = this.manifest.numExperts;
    const keys = order === undefined ? Array.from({ length: this.manifest.numLayers * E }, (_, i) => i) : order.map((o) => this.key(o.layer, o.expert));
    await this.store.preload(keys);
  }

  async close(): Promise<void> {
    await this.store.close();
    await this.fp32Session.release();
  }
}
