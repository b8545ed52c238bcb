/**
 * The expert cache: entries keyed by expert id, bounded in bytes. It never holds
 * more than its budget: admitting an entry evicts unpinned entries in policy order
 * until the new one fits, and refuses (returns null, evicting nothing) when it
 * cannot fit even then; the caller then uses the expert once and drops it.
 *
 * Policies:
 *   lru        evict the least recently used entry.
 *   frequency  evict the entry with the lowest decayed use count, ties to the least
 *              recently used. Counts are kept for every expert ever seen, not only
 *              cached ones (so a popular expert that was evicted comes back with its
 *              history), and halve every `decayEvery` uses so that a shift in routing
 *              (a new request, a new topic) wins over old popularity.
 */
export type CachePolicy = 'lru' | 'frequency';

export const CACHE_POLICIES: readonly CachePolicy[] = ['lru', 'frequency'];

interface Entry<V> {
  value: V;
  readonly bytes: number;
  lastUse: number;
  pins: number;
}

export interface Admission<V> {
  readonly evicted: ReadonlyArray<{ readonly key: number; readonly value: V }>;
}

export class ExpertCache<V> {
  private readonly entries = new Map<number, Entry<V>>();
  private readonly counts = new Map<number, number>();
  private clock = 0;
  private usesSinceDecay = 0;
  private bytes = 0;
  evictions = 0;

  constructor(
    readonly budgetBytes: number,
    readonly policy: CachePolicy,
    private readonly decayEvery = 1024,
  ) {
    if (!Number.isFinite(budgetBytes) || budgetBytes < 0)
      throw new RangeError(`expert cache budget must be a non-negative number of bytes, got ${budgetBytes}`);
  }

  get residentBytes(): number {
    return this.bytes;
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: number): boolean {
    return this.entries.has(key);
  }

  keys(): number[] {
    return [...this.entries.keys()];
  }

  /** Records a use of `key` (hit or miss) for recency and frequency. */
  touch(key: number): void {
    this.clock += 1;
    const e = this.entries.get(key);
    if (e) e.lastUse = this.clock;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    this.usesSinceDecay += 1;
    if (this.usesSinceDecay >= this.decayEvery) {
      this.usesSinceDecay = 0;
      for (const [k, c] of this.counts) this.counts.set(k, c / 2);
    }
  }

  frequency(key: number): number {
    return this.counts.get(key) ?? 0;
  }

  get(key: number): V | undefined {
    return this.entries.get(key)?.value;
  }

  /** Replaces a cached value (e.g. raw bytes -> a ready session) without changing its accounting. */
  replace(key: number, value: V): void {
    const e = this.entries.get(key);
    if (!e) throw new Error(`expert cache: replace of absent key ${key}`);
    e.value = value;
  }

  pin(key: number): void {
    const e = this.entries.get(key);
    if (e) e.pins += 1;
  }

  unpin(key: number): void {
    const e = this.entries.get(key);
    if (e && e.pins > 0) e.pins -= 1;
  }

  /** The entry the policy would evict next among unpinned ones, or null. */
  victim(): number | null {
    let best: number | null = null;
    let bestEntry: Entry<V> | null = null;
    for (const [k, e] of this.entries) {
      if (e.pins > 0) continue;
      if (bestEntry === null || this.before(k, e, best ?? -1, bestEntry)) {
        best = k;
        bestEntry = e;
      }
    }
    return best;
  }

  private before(k: number, e: Entry<V>, bk: number, be: Entry<V>): boolean {
    if (this.policy === 'frequency') {
      const fa = this.frequency(k);
      const fb = this.frequency(bk);
      if (fa !== fb) return fa < fb;
    }
    return e.lastUse < be.lastUse;
  }

  /**
   * Inserts key (which must be absent), evicting in policy order until it fits.
   * Returns null, changing nothing, when it cannot fit beside the pinned entries.
   */
  admit(key: number, value: V, bytes: number): Admission<V> | null {
    if (this.entries.has(key)) throw new Error(`expert cache: key ${key} already cached`);
    if (bytes > this.budgetBytes) return null;
    let pinned = 0;
    for (const e of this.entries.values()) if (e.pins > 0) pinned += e.bytes;
    if (pinned + bytes > this.budgetBytes) return null;
    const evicted: Array<{ key: number; value: V }> = [];
    while (this.bytes + bytes > this.budgetBytes) {
      const v = this.victim();
      if (v === null) throw new Error('unreachable: pinned bytes checked above');
      const e = this.entries.get(v);
      if (!e) throw new Error('unreachable');
      this.entries.delete(v);
      this.bytes -= e.bytes;
      this.evictions += 1;
      evicted.push({ key: v, value: e.value });
    }
    this.entries.set(key, { value, bytes, lastUse: this.clock, pins: 0 });
    this.bytes += bytes;
    return { evicted };
  }

  /** Removes every entry (returned so the caller can release them). */
  clear(): Array<{ key: number; value: V }> {
    const out = [...this.entries].map(([key, e]) => ({ key, value: e.value }));
    this.entries.clear();
    this.bytes = 0;
    return out;
  }
}
