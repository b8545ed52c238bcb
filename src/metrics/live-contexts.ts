/** One sequence being generated: its context grows by one per token (a field bump, nothing per-token allocated). */
export interface LiveContext {
  tokens: number;
  end(): void;
}

/**
 * The sequences being generated now, so the longest-live-context gauge can be
 * read at scrape time. A policy that served once keeps reporting (0 when idle)
 * so its series does not vanish between requests.
 */
export class LiveContexts {
  private readonly live = new Set<LiveContext & { readonly policy: string }>();
  private readonly seen = new Set<string>();

  start(policy: string, promptTokens: number): LiveContext {
    const entry = { policy, tokens: promptTokens, end: (): void => void this.live.delete(entry) };
    this.live.add(entry);
    this.seen.add(policy);
    return entry;
  }

  get size(): number {
    return this.live.size;
  }

  longestByPolicy(): Map<string, number> {
    const out = new Map<string, number>();
    for (const policy of this.seen) out.set(policy, 0);
    for (const { policy, tokens } of this.live) out.set(policy, Math.max(out.get(policy) ?? 0, tokens));
    return out;
  }
}
