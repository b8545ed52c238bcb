/** Why a generation was aborted; decides what (if anything) the client is told. */
export type AbortKind = 'client_closed' | 'cancelled' | 'timeout' | 'shutdown';

export class GenerationAbort extends Error {
  constructor(readonly kind: AbortKind) {
    super(`generation aborted: ${kind}`);
    this.name = 'GenerationAbort';
  }
}

export function abortKind(signal: AbortSignal): AbortKind | null {
  if (!signal.aborted) return null;
  return signal.reason instanceof GenerationAbort ? signal.reason.kind : 'client_closed';
}

/**
 * Every running generation's AbortController, so shutdown can wait for them
 * (grace period) and then abort the stragglers.
 */
export class Inflight {
  private readonly controllers = new Set<AbortController>();
  private waiters: (() => void)[] = [];

  get size(): number {
    return this.controllers.size;
  }

  /** Registers a controller; the returned function unregisters it. */
  track(controller: AbortController): () => void {
    this.controllers.add(controller);
    return () => {
      this.controllers.delete(controller);
      if (this.controllers.size === 0) {
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      }
    };
  }

  abortAll(kind: AbortKind): void {
    for (const c of this.controllers) c.abort(new GenerationAbort(kind));
  }

  /** Resolves once nothing is running. */
  idle(): Promise<void> {
    if (this.controllers.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
