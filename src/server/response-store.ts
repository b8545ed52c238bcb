/**
 * Conversation state for the HTTP Responses API's `previous_response_id`: each
 * finished response's messages (input plus its output), in memory, bounded.
 * Eviction: least recently used first once `capacity` responses are held (a
 * lookup counts as a use); a response evicted or from before a restart is
 * unknown, and naming it is a 404 the client can recover from by resending the
 * conversation as `input`.
 */
import type { ChatMessage } from '../model/tokenizer-types.js';

export const RESPONSE_STORE_CAPACITY = 1000;

export class ResponseStore {
  private readonly entries = new Map<string, readonly ChatMessage[]>();

  constructor(private readonly capacity: number = RESPONSE_STORE_CAPACITY) {}

  get(id: string): readonly ChatMessage[] | undefined {
    const messages = this.entries.get(id);
    if (messages !== undefined) {
      this.entries.delete(id);
      this.entries.set(id, messages);
    }
    return messages;
  }

  put(id: string, messages: readonly ChatMessage[]): void {
    this.entries.delete(id);
    this.entries.set(id, messages);
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}
