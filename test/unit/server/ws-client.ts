import type { WebSocket } from 'ws';

/** Collects a websocket's JSON events and waits for the ones a test expects. */
export class EventLog {
  readonly events: Record<string, unknown>[] = [];
  private waiters: { predicate: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }[] = [];

  constructor(socket: WebSocket) {
    socket.on('message', (data) => {
      const event = JSON.parse(String(data)) as Record<string, unknown>;
      this.events.push(event);
      this.waiters = this.waiters.filter((w) => {
        if (!w.predicate(event)) return true;
        w.resolve(event);
        return false;
      });
    });
  }

  /** Resolves with the first event (seen or future) of this type after index `from`. */
  next(type: string, from = 0, timeoutMs = 5000): Promise<Record<string, unknown>> {
    const seen = this.events.slice(from).find((e) => e['type'] === type);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${type} event within ${timeoutMs} ms; got ${this.types().join(', ')}`)), timeoutMs);
      this.waiters.push({
        predicate: (e) => e['type'] === type,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  types(from = 0): string[] {
    return this.events.slice(from).map((e) => String(e['type']));
  }
}
