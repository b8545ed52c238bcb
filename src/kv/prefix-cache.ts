/**
 * Automatic prefix caching (vLLM's APC, hash-chained blocks): the KV of full
 * blocks of `blockTokens` tokens, each keyed by a hash chained over every token
 * before it and its own, so a block is found only under the exact prefix that
 * produced it (the stored tokens and parent are compared too: a hash collision
 * is a miss, never wrong KV). A new sequence whose prompt starts with cached
 * blocks gets their entries copied into its own cache and prefills only the
 * rest. Blocks are held in the KV pool's budget (reserved there, like a
 * sequence's reservation) under their own byte bound, and evicted least
 * recently used, leaves first (a parent is never dropped before its children,
 * so every cached block stays reachable). Admission may evict any of them: the
 * cache never keeps a request waiting. Only sequences whose policy leaves full
 * attention's KV for the prefix (PolicyRuntime.prefixCacheBypass null) read or
 * write it; the engine decides that.
 */
import type { KvPool } from './kv-pool.js';
import { allocKv, copyKv, type KvArray } from './kv-dtype.js';
import { kvBytesPerToken, kvDtypeOf, type KvShape, type SequenceKv } from './sequence-kv.js';

export interface PrefixCacheOptions {
  /** Tokens per block (the unit of reuse). */
  readonly blockTokens: number;
  /** Most bytes the cache may hold (within the KV budget). */
  readonly maxBytes: number;
}

interface Block {
  readonly key: string;
  readonly parent: Block | null;
  readonly tokens: Int32Array;
  /** Per layer [numKvHeads, blockTokens, headDim] in the cache's storage dtype: the layout of a one-row present tensor. */
  readonly keys: KvArray[];
  readonly values: KvArray[];
  children: number;
  lastUsed: number;
}

export interface PrefixCacheStats {
  readonly blocks: number;
  readonly bytes: number;
  /** Blocks evicted since start. */
  readonly evictions: number;
}

/** 32-bit FNV-1a style step over one integer, seeded per lane. */
function mix(h: number, v: number): number {
  h ^= v & 0xffff;
  h = Math.imul(h, 0x01000193);
  h ^= v >>> 16;
  return Math.imul(h, 0x01000193) >>> 0;
}

/** Chain keys of the full blocks of `tokens`: key i covers tokens [0, (i + 1) * blockTokens). */
export function blockKeys(tokens: readonly number[], blockTokens: number): string[] {
  const keys: string[] = [];
  let a = 0x811c9dc5;
  let b = 0x9e3779b9;
  const full = Math.floor(tokens.length / blockTokens);
  for (let i = 0; i < full; i++) {
    for (let j = i * blockTokens; j < (i + 1) * blockTokens; j++) {
      const t = tokens[j] ?? 0;
      a = mix(a, t);
      b = mix(b ^ 0x5bd1e995, t + 0x27d4eb2d);
    }
    keys.push(`${a.toString(36)}.${b.toString(36)}`);
  }
  return keys;
}

export class PrefixCache {
  private readonly blocks = new Map<string, Block>();
  private readonly blockBytes: number;
  private clock = 0;
  private evicted = 0;

  constructor(
    private readonly shape: KvShape,
    private readonly pool: KvPool,
    readonly options: PrefixCacheOptions,
  ) {
    if (!Number.isInteger(options.blockTokens) || options.blockTokens < 1)
      throw new Error(`PrefixCache: blockTokens must be a positive integer, got ${options.blockTokens}`);
    this.blockBytes = options.blockTokens * kvBytesPerToken(shape);
  }

  get bytes(): number {
    return this.blocks.size * this.blockBytes;
  }

  stats(): PrefixCacheStats {
    return { blocks: this.blocks.size, bytes: this.bytes, evictions: this.evicted };
  }

  /** The cached blocks `tokens` starts with, in order (`keys` from blockKeys(tokens)). */
  private chain(tokens: readonly number[], keys: readonly string[]): Block[] {
    const B = this.options.blockTokens;
    const found: Block[] = [];
    let parent: Block | null = null;
    for (let i = 0; i < keys.length; i++) {
      const block = this.blocks.get(keys[i] ?? '');
      if (!block || block.parent !== parent) break;
      let same = true;
      for (let j = 0; j < B && same; j++) same = block.tokens[j] === tokens[i * B + j];
      if (!same) break;
      found.push(block);
      parent = block;
    }
    return found;
  }

  /** Leading tokens of `tokens` whose KV is cached, at most `limit`. */
  match(tokens: readonly number[], keys: readonly string[], limit: number): number {
    return Math.min(limit, this.chain(tokens, keys).length * this.options.blockTokens);
  }

  /**
   * Appends the cached KV of the first `match(...)` tokens (at most `limit`)
   * to an empty sequence cache, at positions 0..n-1; returns n.
   */
  attach(kv: SequenceKv, tokens: readonly number[], keys: readonly string[], limit: number): number {
    if (kv.maxLength !== 0) throw new Error('PrefixCache.attach: the sequence cache is not empty');
    const B = this.options.blockTokens;
    const now = ++this.clock;
    let done = 0;
    for (const block of this.chain(tokens, keys)) {
      if (done >= limit) break;
      const count = Math.min(B, limit - done);
      kv.append(
        block.keys,
        block.values,
        0,
        B,
        Array.from({ length: count }, (_, i) => done + i),
      );
      block.lastUsed = now;
      done += count;
    }
    return done;
  }

  /**
   * Stores the full blocks of `tokens` whose entries `kv` holds (entry i at
   * position i in every layer) and the cache lacks, within its byte bound and
   * the pool's budget; stops at the first block it cannot hold. The entries
   * are copied out first, then `release` runs (a finished sequence gives its
   * reservation back before its blocks claim room), then the blocks are added.
   * Returns the number of blocks added.
   */
  insert(kv: SequenceKv, tokens: readonly number[], keys: readonly string[], release: () => void = () => undefined): number {
    const B = this.options.blockTokens;
    const now = ++this.clock;
    const usable = Math.min(keys.length, Math.floor(Math.min(tokens.length, kv.minLength) / B));
    const pending: Block[] = [];
    let parent: Block | null = null;
    for (let i = 0; i < usable; i++) {
      const key = keys[i] ?? '';
      const have = pending.length === 0 ? this.blocks.get(key) : undefined;
      if (have) {
        if (have.parent !== parent) break;
        have.lastUsed = now;
        parent = have;
        continue;
      }
      if (!this.intact(kv, i * B)) break;
      const block = this.copyOut(kv, key, parent, tokens, i * B, now);
      pending.push(block);
      parent = block;
    }
    release();
    let added = 0;
    for (const block of pending) {
      // (A key already present under another parent is a hash collision: keep the cached block.)
      if (this.blocks.has(block.key) || !this.makeRoom(block.parent)) break;
      this.blocks.set(block.key, block);
      if (block.parent) block.parent.children += 1;
      added += 1;
    }
    return added;
  }

  /** Evicts least recently used leaf blocks until `bytes` more fit the pool; false when the cache is empty first. */
  reclaim(bytes: number): boolean {
    while (this.pool.reservedBytes + bytes > this.pool.budgetBytes) {
      if (!this.evictOne(null)) return false;
    }
    return true;
  }

  /** Drops every block (and its share of the pool). */
  clear(): void {
    while (this.evictOne(null));
  }

  /** Room for one more block under the cache's bound and the pool's budget, never evicting `keep` (the new block's parent). */
  private makeRoom(keep: Block | null): boolean {
    while (this.bytes + this.blockBytes > this.options.maxBytes) if (!this.evictOne(keep)) return false;
    while (!this.pool.tryReserve(this.blockBytes)) if (!this.evictOne(keep)) return false;
    return true;
  }

  private evictOne(keep: Block | null): boolean {
    let victim: Block | null = null;
    for (const b of this.blocks.values()) {
      if (b.children > 0 || b === keep) continue;
      if (victim === null || b.lastUsed < victim.lastUsed) victim = b;
    }
    if (victim === null) return false;
    this.blocks.delete(victim.key);
    if (victim.parent) victim.parent.children -= 1;
    this.pool.unreserve(this.blockBytes);
    this.evicted += 1;
    return true;
  }

  /** Entries [start, start + blockTokens) sit at their own positions in every layer and head (nothing evicted or shifted). */
  private intact(kv: SequenceKv, start: number): boolean {
    const B = this.options.blockTokens;
    for (let l = 0; l < this.shape.numLayers; l++) {
      const cap = kv.capacity(l);
      const pos = kv.positionBuffer(l);
      for (let h = 0; h < this.shape.numKvHeads; h++) {
        for (let i = 0; i < B; i++) if (pos[h * cap + start + i] !== start + i) return false;
      }
    }
    return true;
  }

  private copyOut(kv: SequenceKv, key: string, parent: Block | null, tokens: readonly number[], start: number, now: number): Block {
    const B = this.options.blockTokens;
    const { numLayers, numKvHeads: KV, headDim: D } = this.shape;
    const keys: KvArray[] = [];
    const values: KvArray[] = [];
    const dtype = kvDtypeOf(this.shape);
    if (kv.dtype !== dtype) throw new Error(`PrefixCache: a ${kv.dtype} sequence cache in a ${dtype} prefix cache`);
    for (let l = 0; l < numLayers; l++) {
      const cap = kv.capacity(l);
      const kSrc = kv.keyBuffer(l);
      const vSrc = kv.valueBuffer(l);
      const k = allocKv(dtype, KV * B * D);
      const v = allocKv(dtype, KV * B * D);
      for (let h = 0; h < KV; h++) {
        const from = (h * cap + start) * D;
        copyKv(k, h * B * D, kSrc, from, B * D);
        copyKv(v, h * B * D, vSrc, from, B * D);
      }
      keys.push(k);
      values.push(v);
    }
    return { key, parent, tokens: Int32Array.from(tokens.slice(start, start + B)), keys, values, children: 0, lastUsed: now };
  }
}
