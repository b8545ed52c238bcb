/**
 * The one weight store behind expert offload (EdgeMoE, moe-expert-store.ts) and
 * elastic dense weights (STI, sti-runner.ts): shards of a model, each in its own
 * file at one or more bitwidths, read asynchronously with one positioned read on
 * libuv's threadpool (so a prefetch proceeds while session.run holds the
 * inference thread), checked against the manifest's length and CRC-32, and kept
 * in an ExpertCache bounded in bytes (file bytes: the number budgets are stated
 * in). A shard is a numeric key; its current width comes from an assignment the
 * owner sets; what a shard's bytes become when used (an onnxruntime session, a
 * Float32Array view, dequantized matrices) is the owner's codec.
 *
 * acquire() pins what it returns until release(); a shard that cannot fit beside
 * the pinned ones is used once and dropped (transient). prefetch() never awaits.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { ExpertCache, type CachePolicy } from '../kv/expert-cache.js';
import type { ShardFile } from '../model/compile/sti-shards.js';

export type { ShardFile };

export type ShardFailure = 'missing' | 'corrupt';

/** What a store's owner supplies: where each shard's file is, what its bytes become, and its own error type. */
export interface ShardCodec<V> {
  /** The file of shard `key` at `bits`; throws (via fail) when the manifest lists none. */
  file(key: number, bits: number): ShardFile;
  /** The usable form of a shard's bytes. */
  materialize(key: number, bits: number, bytes: Uint8Array): Promise<V>;
  /** Frees what materialize made (sessions); no-op for plain arrays. */
  release(value: V): void;
  /** E.g. "layer 3 expert 2 (8-bit)", for messages. */
  describe(key: number, bits: number): string;
  /** The owner's error for a missing or corrupt file (`path` null: no file involved). */
  fail(kind: ShardFailure, path: string | null, message: string, cause?: unknown): Error;
}

export interface ShardStoreOptions {
  readonly budgetBytes: number;
  readonly cachePolicy: CachePolicy;
}

export interface ShardStoreStats {
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
}

/** A set of shards acquired together; release() unpins them and frees transient ones. */
export interface AcquiredShards<V> {
  readonly values: ReadonlyMap<number, V>;
  /** A closure over the store: safe to pass on detached (Acquired.release is this function). */
  readonly release: () => void;
}

type CacheValue<V> = { state: 'raw'; bytes: Uint8Array; bits: number } | { state: 'ready'; value: V; bits: number };

export class ShardStore<V> {
  private cache: ExpertCache<CacheValue<V>>;
  private readonly inflight = new Map<number, { bits: number; promise: Promise<Uint8Array> }>();
  /** Keys admitted by a prefetch and not used since. */
  private readonly unusedPrefetched = new Set<number>();
  private assignment: (key: number) => number = () => 32;
  private transientBytes = 0;
  private readonly handles = new Map<string, Promise<FileHandle>>();
  readonly stats: ShardStoreStats = ShardStore.zeroStats();

  constructor(
    private readonly dir: string,
    private readonly codec: ShardCodec<V>,
    private options: ShardStoreOptions,
  ) {
    this.cache = new ExpertCache<CacheValue<V>>(options.budgetBytes, options.cachePolicy);
  }

  static zeroStats(): ShardStoreStats {
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
    };
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

  has(key: number): boolean {
    return this.cache.has(key);
  }

  bitsOf(key: number): number {
    return this.assignment(key);
  }

  fileBytes(key: number, bits: number): number {
    return this.codec.file(key, bits).bytes;
  }

  /** New widths or a new cache configuration: drops everything cached (in-flight reads finish unused). */
  reconfigure(assignment: (key: number) => number, options?: Partial<ShardStoreOptions>): void {
    this.assignment = assignment;
    this.options = { ...this.options, ...options };
    this.dropAll();
    this.cache = new ExpertCache<CacheValue<V>>(this.options.budgetBytes, this.options.cachePolicy);
  }

  resetStats(): void {
    Object.assign(this.stats, ShardStore.zeroStats());
    this.stats.residentPeak = this.cache.residentBytes;
  }

  /** Opened once per file and kept: a load is then one positioned read, one threadpool hop. */
  private async handleFor(key: number, bits: number, path: string): Promise<FileHandle> {
    const open_ = this.handles.get(path);
    if (open_) return open_;
    const opening = open(path, 'r').catch((err: unknown) => {
      this.handles.delete(path);
      throw this.codec.fail(
        'missing',
        path,
        `file for ${this.codec.describe(key, bits)} cannot be opened (${(err as Error).message}); recompile the model`,
        err,
      );
    });
    this.handles.set(path, opening);
    return opening;
  }

  /**
   * One positioned read of the whole file (one byte more than the manifest says,
   * to notice a longer file), then length and CRC-32 checks.
   */
  async read(key: number, bits: number): Promise<Uint8Array> {
    const f = this.codec.file(key, bits);
    const path = join(this.dir, f.file);
    const handle = await this.handleFor(key, bits, path);
    const buf = new Uint8Array(new ArrayBuffer(f.bytes + 1));
    let got = 0;
    try {
      while (got < buf.length) {
        const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (err) {
      throw this.codec.fail('corrupt', path, `reading the file failed (${(err as Error).message})`, err);
    }
    if (got !== f.bytes) {
      throw this.codec.fail('corrupt', path, `file is ${got > f.bytes ? 'longer than' : `${got} bytes,`} the manifest says ${f.bytes}; recompile the model`);
    }
    const bytes = buf.subarray(0, f.bytes);
    const sum = crc32(bytes);
    if (sum !== f.crc32)
      throw this.codec.fail(
        'corrupt',
        path,
        `CRC-32 ${sum.toString(16)} does not match the manifest's ${f.crc32.toString(16)}; the file is corrupt, recompile the model`,
      );
    this.stats.bytesLoaded += f.bytes;
    return bytes;
  }

  async materialize(key: number, bits: number, bytes: Uint8Array): Promise<V> {
    const t0 = performance.now();
    try {
      return await this.codec.materialize(key, bits, bytes);
    } finally {
      this.stats.materializeMs += performance.now() - t0;
    }
  }

  private startRead(key: number, bits: number): Promise<Uint8Array> {
    const existing = this.inflight.get(key);
    if (existing && existing.bits === bits) return existing.promise;
    const promise = this.read(key, bits);
    this.inflight.set(key, { bits, promise });
    const done = (): void => {
      if (this.inflight.get(key)?.promise === promise) this.inflight.delete(key);
    };
    promise.then(done, done);
    return promise;
  }

  private releaseValue(v: CacheValue<V>): void {
    if (v.state === 'ready') this.codec.release(v.value);
  }

  private admit(key: number, value: CacheValue<V>, bytes: number): boolean {
    const r = this.cache.admit(key, value, bytes);
    if (r === null) return false;
    for (const e of r.evicted) {
      if (this.unusedPrefetched.delete(e.key)) this.stats.prefetchWasted += 1;
      this.releaseValue(e.value);
    }
    this.stats.residentPeak = Math.max(this.stats.residentPeak, this.cache.residentBytes);
    return true;
  }

  /**
   * Starts reading the given shards if they are neither cached nor being read.
   * Never awaits: completion admits the bytes into the cache (evicting unpinned
   * entries) or drops them when they do not fit. Read errors surface when (if)
   * the shard is actually needed.
   */
  prefetch(keys: Iterable<number>): void {
    for (const key of keys) {
      if (this.cache.has(key) || this.inflight.has(key)) continue;
      const bits = this.bitsOf(key);
      if (this.fileBytes(key, bits) > this.cache.budgetBytes) continue;
      this.stats.prefetchIssued += 1;
      this.startRead(key, bits).then(
        (buf) => {
          if (this.cache.has(key) || this.bitsOf(key) !== bits) return;
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
   * Starts reading shards without admitting them to the cache (a streamed shard
   * the plan keeps out of memory): the bytes wait in the in-flight table until
   * acquire() takes them, and are dropped after that use.
   */
  stream(keys: Iterable<number>): void {
    for (const key of keys) {
      if (this.cache.has(key) || this.inflight.has(key)) continue;
      this.stats.prefetchIssued += 1;
      this.startRead(key, this.bitsOf(key)).catch(() => {
        this.stats.prefetchWasted += 1;
      });
    }
  }

  /**
   * Makes the given shards ready to use and pins them until release(). Cached
   * ones are pinned first, synchronously (so a prefetch started right after this
   * call cannot evict them); misses are read in parallel and admitted, or used
   * once and dropped when they cannot fit (or `admit` is false: streamed shards).
   */
  async acquire(keys: readonly number[], admit = true): Promise<AcquiredShards<V>> {
    const values = new Map<number, V>();
    const pinned: number[] = [];
    const transient: V[] = [];
    let transientBytes = 0;
    const misses: number[] = [];
    const rawTransient = new Map<number, Uint8Array>();
    for (const key of keys) {
      this.cache.touch(key);
      const v = this.cache.get(key);
      if (v !== undefined && v.bits === this.bitsOf(key)) {
        this.cache.pin(key);
        pinned.push(key);
        if (this.unusedPrefetched.delete(key)) this.stats.prefetchHits += 1;
        else this.stats.hits += 1;
      } else {
        misses.push(key);
      }
    }
    const release = (): void => {
      for (const k of pinned) this.cache.unpin(k);
      for (const v of transient) this.codec.release(v);
      this.transientBytes -= transientBytes;
    };
    try {
      if (misses.length > 0) {
        const t0 = performance.now();
        const reads = misses.map((key) => {
          if (this.inflight.has(key)) this.stats.prefetchHits += 1;
          else this.stats.misses += 1;
          return this.startRead(key, this.bitsOf(key));
        });
        const settled = await Promise.allSettled(reads);
        this.stats.loadStallMs += performance.now() - t0;
        for (const s of settled) if (s.status === 'rejected') throw s.reason;
        misses.forEach((key, i) => {
          const s = settled[i];
          if (s === undefined || s.status !== 'fulfilled') throw new Error('unreachable');
          const bits = this.bitsOf(key);
          // A prefetch completion may have admitted these bytes meanwhile.
          if (this.cache.get(key)?.bits === bits) {
            this.unusedPrefetched.delete(key);
            this.cache.pin(key);
            pinned.push(key);
            return;
          }
          const stale = this.cache.get(key);
          if (stale !== undefined) throw new Error(`internal: ${this.codec.describe(key, bits)} cached at ${stale.bits} bits`);
          if (admit && this.admit(key, { state: 'raw', bytes: s.value, bits }, s.value.byteLength)) {
            this.cache.pin(key);
            pinned.push(key);
          } else {
            rawTransient.set(key, s.value);
          }
        });
      }
      // Materialize pinned raw entries and transient bytes into usable values.
      for (const key of keys) {
        const bits = this.bitsOf(key);
        const raw = rawTransient.get(key);
        if (raw !== undefined) {
          const v = await this.materialize(key, bits, raw);
          transient.push(v);
          transientBytes += raw.byteLength;
          this.transientBytes += raw.byteLength;
          this.stats.transientPeak = Math.max(this.stats.transientPeak, this.transientBytes);
          values.set(key, v);
          continue;
        }
        const c = this.cache.get(key);
        if (c === undefined) throw new Error(`internal: ${this.codec.describe(key, bits)} neither cached nor transient`);
        if (c.state === 'raw') {
          const v = await this.materialize(key, bits, c.bytes);
          this.cache.replace(key, { state: 'ready', value: v, bits });
          values.set(key, v);
        } else {
          values.set(key, c.value);
        }
      }
    } catch (err) {
      release();
      throw err;
    }
    return { values, release };
  }

  /** Loads one shard at a given width outside the cache (profiling); the caller releases the value. */
  async loadDetached(key: number, bits: number): Promise<{ value: V; release: () => void }> {
    const bytes = await this.read(key, bits);
    const value = await this.materialize(key, bits, bytes);
    return { value, release: () => this.codec.release(value) };
  }

  private dropAll(): void {
    for (const e of this.cache.clear()) this.releaseValue(e.value);
    this.unusedPrefetched.clear();
  }

  /**
   * Preloads shards in the given order while they fit, skipping any that does
   * not; each preloaded shard counts as one use for the frequency policy.
   */
  async preload(order: Iterable<number>): Promise<void> {
    for (const key of order) {
      const bits = this.bitsOf(key);
      if (this.cache.has(key)) continue;
      if (this.cache.residentBytes + this.fileBytes(key, bits) > this.cache.budgetBytes) continue;
      const bytes = await this.read(key, bits);
      const value = await this.materialize(key, bits, bytes);
      this.cache.touch(key);
      this.admit(key, { state: 'ready', value, bits }, bytes.byteLength);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.inflight.values()].map((f) => f.promise));
    this.dropAll();
    const handles = await Promise.allSettled(this.handles.values());
    this.handles.clear();
    for (const h of handles) if (h.status === 'fulfilled') await h.value.close();
  }
}
