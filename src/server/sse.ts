import { once } from 'node:events';
import type { ServerResponse } from 'node:http';

/** Server-sent events framed exactly as OpenAI's: `data: {json}\n\n`, ending with `data: [DONE]\n\n`. */
export class SseStream {
  /** `beforeOpen` runs just before the head is written (fastify's reply.hijack). */
  constructor(
    private readonly raw: ServerResponse,
    private readonly beforeOpen: () => void = () => undefined,
  ) {}

  get closed(): boolean {
    return this.raw.destroyed || this.raw.writableEnded;
  }

  open(headers: Readonly<Record<string, string>>): void {
    this.beforeOpen();
    this.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      // No explicit Connection header: node honours the client's keep-alive or close.
      // Tells nginx-style proxies not to buffer the stream.
      'x-accel-buffering': 'no',
      ...headers,
    });
    this.raw.flushHeaders();
  }

  /** Writes one event; waits for the socket to drain so a slow reader applies backpressure. */
  async send(payload: unknown): Promise<void> {
    if (this.closed) return;
    if (!this.raw.write(`data: ${JSON.stringify(payload)}\n\n`)) {
      await Promise.race([once(this.raw, 'drain'), once(this.raw, 'close')]);
    }
  }

  /** A named event (`event: type` then `data:`), as the Responses API streams them. */
  async sendEvent(type: string, payload: unknown): Promise<void> {
    if (this.closed) return;
    if (!this.raw.write(`event: ${type}\ndata: ${JSON.stringify(payload)}\n\n`)) {
      await Promise.race([once(this.raw, 'drain'), once(this.raw, 'close')]);
    }
  }

  /** Ends without [DONE] (the Responses API's streams end after their last event). */
  close(): void {
    if (!this.closed) this.raw.end();
  }

  end(): void {
    if (this.closed) return;
    this.raw.end('data: [DONE]\n\n');
  }
}
