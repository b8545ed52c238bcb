/**
 * The engine's use of the prefix cache (src/kv/prefix-cache.ts): which
 * sequences may share a prefix (their policy leaves full attention's KV for
 * it, PolicyRuntime.prefixCacheBypass; scoring passes need every position's
 * logits and never read it), how many prompt tokens a waiting sequence would
 * find cached (for the scheduler), attaching them at admission, and storing a
 * sequence's blocks when its prompt is prefilled and when it ends (prompt and
 * generated tokens: the next turn of a chat starts with them). At least the
 * prompt's last token is always prefilled, since its logits start generation.
 * Records what happened in the sequence's report (hit, miss, bypassed).
 */
import { blockKeys, PrefixCache, type PrefixCacheOptions, type PrefixCacheStats } from '../kv/prefix-cache.js';
import type { KvPool } from '../kv/kv-pool.js';
import type { KvShape, SequenceKv } from '../kv/sequence-kv.js';
import type { Sequence } from './sequence.js';

export class PrefixReuse {
  private readonly cache: PrefixCache;

  constructor(shape: KvShape, pool: KvPool, options: PrefixCacheOptions) {
    this.cache = new PrefixCache(shape, pool, options);
  }

  get bytes(): number {
    return this.cache.bytes;
  }

  stats(): PrefixCacheStats {
    return this.cache.stats();
  }

  private shares(seq: Sequence): boolean {
    return seq.scoring === null && seq.runtime.prefixCacheBypass === null;
  }

  private keys(seq: Sequence): readonly string[] {
    seq.prefixKeys ??= blockKeys(seq.prompt, this.cache.options.blockTokens);
    return seq.prefixKeys;
  }

  /** Prompt tokens a waiting sequence would find cached now (0 when its policy cannot share). */
  cachedPrefix(seq: Sequence): number {
    if (!this.shares(seq) || seq.prompt.length < 2) return 0;
    return this.cache.match(seq.prompt, this.keys(seq), seq.prompt.length - 1);
  }

  /** At admission, into the sequence's new (empty) cache: the cached prefix, and the report of what happened. */
  attach(seq: Sequence, kv: SequenceKv): void {
    if (seq.scoring !== null) return;
    const reason = seq.runtime.prefixCacheBypass;
    if (reason !== null) {
      seq.prefixCache = { status: 'bypassed', cachedTokens: 0, reason };
      return;
    }
    const n = seq.prompt.length < 2 ? 0 : this.cache.attach(kv, seq.prompt, this.keys(seq), seq.prompt.length - 1);
    seq.prefilled = n;
    seq.prefixCache = { status: n > 0 ? 'hit' : 'miss', cachedTokens: n, reason: null };
  }

  /** The prompt is prefilled: its full blocks become shareable with requests that arrive while it decodes. */
  prefillDone(seq: Sequence): void {
    if (seq.kv && this.shares(seq)) this.cache.insert(seq.kv, seq.prompt, this.keys(seq));
  }

  /**
   * The sequence ended with `kv` (its cache) intact: keep the blocks of its
   * prompt and what it generated; `kv` is released either way (its
   * reservation is given back before the blocks claim room).
   */
  retire(seq: Sequence, kv: SequenceKv): void {
    if (!this.shares(seq) || seq.state !== 'finished' || seq.prefilled < seq.prompt.length) {
      kv.release();
      return;
    }
    const tokens = [...seq.prompt, ...seq.outputTokens];
    this.cache.insert(kv, tokens, blockKeys(tokens, this.cache.options.blockTokens), () => kv.release());
  }

  /** Evicts cached blocks until `bytes` more fit the KV budget; false when even an empty cache leaves too little. */
  reclaim(bytes: number): boolean {
    return this.cache.reclaim(bytes);
  }
}
