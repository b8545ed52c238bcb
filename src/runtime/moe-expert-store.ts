/**
 * Where routed experts come from at run time: their per-expert files (written by
 * model/compile/moe-compile.ts), read asynchronously with one positioned read on
 * libuv's threadpool (so a prefetch proceeds while session.run holds the inference
 * thread), checked against the manifest's length and CRC-32, and kept in an
 * ExpertCache bounded in bytes. fp32 experts become two Float32Array views fed to
 * the shared fp32 expert graph; quantized experts become their own session (see
 * moe-graphs.ts for why). Accounting is in file bytes, the same number the budget
 * is stated in.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import * as ort from 'onnxruntime-node';
import type { ExpertFile, MoeManifest } from '../model/compile/moe-compile.js';
import { MOE_IO } from '../model/compile/moe-graphs.js';
import type { ExpertBits } from '../model/compile/moe-quantize.js';
import { ExpertCache, type CachePolicy } from '../kv/expert-cache.js';

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

type CacheValue = { state: 'raw'; bytes: Uint8Array; bits: ExpertBits } | { state: 'ready'; handle: ExpertHandle; bits: ExpertBits };

export interface ExpertStoreOptions {
  readonly budgetBytes: number;
  readonly cachePolicy: CachePolicy;
  /** intra-op threads of the shared fp32 expert session; quantized expert sessions use 1 (no pool per expert). */
  readonly threads: number;
}

export interface ExpertStoreStats {
  hits: number;
  misses: number;
  /** Misses whose bytes were already read (or being read) by a prefetch. */
  prefetchHits: number;
  prefetchIssued: number;
  /** Prefetched entries evicted or dropped before any use. */
  prefetchWasted: number;
  bytesLoaded: number;
  loadStallMs: number;
  materializeMs: number;
  residentPeak: number;
  transientPeak: number;
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
  private cache: ExpertCache<CacheValue>;
  private readonly files = new Map<string, ExpertFile>();
  private readonly inflight = new Map<number, { bits: ExpertBits; promise: Promise<Uint8Array> }>();
  /** Keys admitted by a prefetch and not used since. */
  private readonly unusedPrefetched = new Set<number>();
  private assignment: (layer: number, expert: number) => ExpertBits = () => 32;
  private transientBytes = 0;
  private readonly handles = new Map<string, Promise<FileHandle>>();
  readonly stats: ExpertStoreStats = ExpertStore.zeroStats();

  private constructor(
    private readonly dir: string,
    readonly manifest: MoeManifest,
    private readonly fp32Session: ort.InferenceSession,
    private options: ExpertStoreOptions,
  ) {
    for (const f of manifest.experts) this.files.set(`${f.layer}:${f.expert}:${f.bits}`, f);
    this.cache = new ExpertCache<CacheValue>(options.budgetBytes, options.cachePolicy);
  }

  static zeroStats(): ExpertStoreStats {
    return {
      hits: 0,
      misses: 0,
      prefetchHits: 0,
      prefetchIssued: 0,
      prefetchWasted: 0,
      bytesLoaded: 0,
      loadStallMs: 0,
      materializeMs: 0,
      residentPeak: 0,
      transientPeak: 0,
      expertCalls: 0,
    };
  }

  static async open(dir: string, manifest: MoeManifest, options: ExpertStoreOptions): Promise<ExpertStore> {
    const fp32Session = await ort.InferenceSession.create(join(dir, manifest.fp32ExpertGraph), {
      ...EXPERT_SESSION_OPTIONS,
      intraOpNumThreads: options.threads,
      enableCpuMemArena: true,
    });
    return new ExpertStore(dir, manifest, fp32Session, options);
  }

  get budgetBytes(): number {
    return this.cache.budgetBytes;
  }

  get residentBytes(): number {
    return this.cache.residentBytes;
  }

  cachedKeys(): number[] {
    return this.cache.keys();
  }

  key(layer: number, expert: number): number {
    return layer * this.manifest.numExperts + expert;
  }

  bitsOf(layer: number, expert: number): ExpertBits {
    return this.assignment(layer, expert);
  }

  fileBytes(layer: number, expert: number, bits: ExpertBits): number {
    return this.entry(layer, expert, bits).bytes;
  }

  /** New widths or a new cache configuration: drops everything cached (in-flight reads finish unused). */
  reconfigure(assignment: (layer: number, expert: number) => ExpertBits, options?: Partial<ExpertStoreOptions>): void {
    this.assignment = assignment;
    this.options = { ...this.options, ...options };
    this.dropAll();
    this.cache = new ExpertCache<CacheValue>(this.options.budgetBytes, this.options.cachePolicy);
  }

  resetStats(): void {
    Object.assign(this.stats, ExpertStore.zeroStats());
    this.stats.residentPeak = this.cache.residentBytes;
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

  /** Opened once per file and kept: a load is then one positioned read, one threadpool hop. */
  private async handleFor(f: ExpertFile, path: string): Promise<FileHandle> {
    const open_ = this.handles.get(path);
    if (open_) return open_;
    const opening = open(path, 'r').catch((err: unknown) => {
      this.handles.delete(path);
      throw new MoeRunnerError(
        'expert_file_missing',
        path,
        `expert file for layer ${f.layer} expert ${f.expert} (${f.bits}-bit) cannot be opened (${(err as Error).message}); recompile the model`,
        { cause: err },
      );
    });
    this.handles.set(path, opening);
    return opening;
  }

  /**
   * One positioned read of the whole file (one byte more than the manifest says,
   * to notice a longer file), then length and CRC-32 checks.
   */
  private async read(f: ExpertFile): Promise<Uint8Array> {
    const path = join(this.dir, f.file);
    const handle = await this.handleFor(f, path);
    const buf = new Uint8Array(new ArrayBuffer(f.bytes + 1));
    let got = 0;
    try {
      while (got < buf.length) {
        const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (err) {
      throw new MoeRunnerError('expert_file_corrupt', path, `reading the expert file failed (${(err as Error).message})`, { cause: err });
    }
    if (got !== f.bytes) {
      throw new MoeRunnerError(
        'expert_file_corrupt',
        path,
        `expert file is ${got > f.bytes ? 'longer than' : `${got} bytes,`} the manifest says ${f.bytes}; recompile the model`,
      );
    }
    const bytes = buf.subarray(0, f.bytes);
    const sum = crc32(bytes);
    if (sum !== f.crc32)
      throw new MoeRunnerError(
        'expert_file_corrupt',
        path,
        `CRC-32 ${sum.toString(16)} does not match the manifest's ${f.crc32.toString(16)}; the file is corrupt, recompile the model`,
      );
    this.stats.bytesLoaded += f.bytes;
    return bytes;
  }

  private async materialize(layer: number, expert: number, bits: ExpertBits, bytes: Uint8Array): Promise<ExpertHandle> {
    const t0 = performance.now();
    try {
      if (bits === 32) {
        const inter = this.manifest.expertIntermediate;
        const h = this.manifest.hidden;
        const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
        return { kind: 'fp32', gateUp: all.subarray(0, 2 * inter * h), down: all.subarray(2 * inter * h) };
      }
      try {
        return { kind: 'session', session: await ort.InferenceSession.create(bytes, EXPERT_SESSION_OPTIONS) };
      } catch (err) {
        const path = join(this.dir, this.entry(layer, expert, bits).file);
        throw new MoeRunnerError('expert_file_corrupt', path, `onnxruntime cannot load the expert graph (${(err as Error).message})`, { cause: err });
      }
    } finally {
      this.stats.materializeMs += performance.now() - t0;
    }
  }

  private startRead(key: number, layer: number, expert: number, bits: ExpertBits): Promise<Uint8Array> {
    const existing = this.inflight.get(key);
    if (existing && existing.bits === bits) return existing.promise;
    const promise = this.read(this.entry(layer, expert, bits));
    this.inflight.set(key, { bits, promise });
    const done = (): void => {
      if (this.inflight.get(key)?.promise === promise) this.inflight.delete(key);
    };
    promise.then(done, done);
    return promise;
  }

  private trackResident(): void {
    this.stats.residentPeak = Math.max(this.stats.residentPeak, this.cache.residentBytes);
  }

  private releaseValue(v: CacheValue): void {
    if (v.state === 'ready' && v.handle.kind === 'session') void v.handle.session.release().catch(() => {});
  }

  private admit(key: number, value: CacheValue, bytes: number): boolean {
    const r = this.cache.admit(key, value, bytes);
    if (r === null) return false;
    for (const e of r.evicted) {
      if (this.unusedPrefetched.delete(e.key)) this.stats.prefetchWasted += 1;
      this.releaseValue(e.value);
    }
    this.trackResident();
    return true;
  }

  /**
   * Starts reading the given experts of `layer` if they are neither cached nor
   * being read. Never awaits: completion admits the bytes into the cache (evicting
   * unpinned entries) or drops them when they do not fit. Read errors surface when
   * (if) the expert is actually needed.
   */
  prefetch(layer: number, experts: Iterable<number>): void {
    for (const e of experts) {
      const key = this.key(layer, e);
      if (this.cache.has(key) || this.inflight.has(key)) continue;
      const bits = this.bitsOf(layer, e);
      const bytes = this.fileBytes(layer, e, bits);
      if (bytes > this.cache.budgetBytes) continue;
      this.stats.prefetchIssued += 1;
      this.startRead(key, layer, e, bits).then(
        (buf) => {
          if (this.cache.has(key) || this.bitsOf(layer, e) !== bits) return;
          if (this.admit(key, { state: 'raw', bytes: buf, bits }, buf.byteLength)) this.unusedPrefetched.add(key);
          else this.stats.prefetchWasted += 1;
        },
        () => {
          this.stats.prefetchWasted += 1;
        },
      );
    }
  }

  /**
   * Makes the experts of `layer` ready to run and pins them until release().
   * Cached ones are pinned first, synchronously (so a prefetch started right after
   * this call cannot evict them); misses are read in parallel and admitted, or
   * used once and dropped when they cannot fit.
   */
  async acquire(layer: number, experts: readonly number[]): Promise<Acquired> {
    const handles = new Map<number, ExpertHandle>();
    const pinned: number[] = [];
    const transient: ExpertHandle[] = [];
    let transientBytes = 0;
    const misses: number[] = [];
    const rawTransient = new Map<number, Uint8Array>();
    for (const e of experts) {
      const key = this.key(layer, e);
      this.cache.touch(key);
      const v = this.cache.get(key);
      if (v !== undefined && v.bits === this.bitsOf(layer, e)) {
        this.cache.pin(key);
        pinned.push(key);
        if (this.unusedPrefetched.delete(key)) this.stats.prefetchHits += 1;
        else this.stats.hits += 1;
      } else {
        misses.push(e);
      }
    }
    const release = (): void => {
      for (const k of pinned) this.cache.unpin(k);
      for (const h of transient) if (h.kind === 'session') void h.session.release().catch(() => {});
      this.transientBytes -= transientBytes;
    };
    try {
      if (misses.length > 0) {
        const t0 = performance.now();
        const reads = misses.map((e) => {
          const key = this.key(layer, e);
          if (this.inflight.has(key)) this.stats.prefetchHits += 1;
          else this.stats.misses += 1;
          return this.startRead(key, layer, e, this.bitsOf(layer, e));
        });
        const settled = await Promise.allSettled(reads);
        this.stats.loadStallMs += performance.now() - t0;
        for (const s of settled) if (s.status === 'rejected') throw s.reason;
        misses.forEach((e, i) => {
          const key = this.key(layer, e);
          const s = settled[i];
          if (s === undefined || s.status !== 'fulfilled') throw new Error('unreachable');
          // A prefetch completion may have admitted these bytes meanwhile.
          if (this.cache.get(key)?.bits === this.bitsOf(layer, e)) {
            this.unusedPrefetched.delete(key);
            this.cache.pin(key);
            pinned.push(key);
            return;
          }
          const bits = this.bitsOf(layer, e);
          const stale = this.cache.get(key);
          if (stale !== undefined) throw new Error(`internal: expert ${layer}:${e} cached at ${stale.bits} bits, assigned ${bits}`);
          if (this.admit(key, { state: 'raw', bytes: s.value, bits }, s.value.byteLength)) {
            this.cache.pin(key);
            pinned.push(key);
          } else {
            rawTransient.set(e, s.value);
          }
        });
      }
      // Materialize pinned raw entries and transient bytes into runnable handles.
      for (const e of experts) {
        const key = this.key(layer, e);
        const bits = this.bitsOf(layer, e);
        const raw = rawTransient.get(e);
        if (raw !== undefined) {
          const h = await this.materialize(layer, e, bits, raw);
          transient.push(h);
          transientBytes += raw.byteLength;
          this.transientBytes += raw.byteLength;
          this.stats.transientPeak = Math.max(this.stats.transientPeak, this.transientBytes);
          handles.set(e, h);
          continue;
        }
        const v = this.cache.get(key);
        if (v === undefined) throw new Error(`internal: expert ${layer}:${e} neither cached nor transient`);
        if (v.state === 'raw') {
          const h = await this.materialize(layer, e, bits, v.bytes);
          this.cache.replace(key, { state: 'ready', handle: h, bits });
          handles.set(e, h);
        } else {
          handles.set(e, v.handle);
        }
      }
    } catch (err) {
      release();
      throw err;
    }
    return { handles, release };
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
    this.stats.expertCalls += 1;
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
    const bytes = await this.read(this.entry(layer, expert, bits));
    const handle = await this.materialize(layer, expert, bits, bytes);
    return { handle, release: () => (handle.kind === 'session' ? void handle.session.release().catch(() => {}) : undefined) };
  }

  private dropAll(): void {
    for (const e of this.cache.clear()) this.releaseValue(e.value);
    this.unusedPrefetched.clear();
  }

  /**
   * Preloads experts in the given order (default: layer by layer) while they fit,
   * skipping any that does not; each preloaded expert counts as one use for the
   * frequency policy.
   */
  async preload(order?: ReadonlyArray<{ readonly layer: number; readonly expert: number }>): Promise<void> {
    const all =
      order ??
      Array.from({ length: this.manifest.numLayers * this.manifest.numExperts }, (_, i) => ({
        layer: Math.floor(i / this.manifest.numExperts),
        expert: i % this.manifest.numExperts,
      }));
    for (const { layer: l, expert: e } of all) {
      const bits = this.bitsOf(l, e);
      const key = this.key(l, e);
      if (this.cache.has(key)) continue;
      if (this.cache.residentBytes + this.fileBytes(l, e, bits) > this.cache.budgetBytes) continue;
      const bytes = await this.read(this.entry(l, e, bits));
      const handle = await this.materialize(l, e, bits, bytes);
      this.cache.touch(key);
      this.admit(key, { state: 'ready', handle, bits }, bytes.byteLength);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.inflight.values()].map((f) => f.promise));
    this.dropAll();
    const handles = await Promise.allSettled(this.handles.values());
    this.handles.clear();
    for (const h of handles) if (h.status === 'fulfilled') await h.value.close();
    await this.fp32Session.release();
  }
}
