/**
 * Byte-exact accounting of KV memory against a budget. Sequences reserve their
 * worst case at admission (prompt + max new tokens) so a running sequence never
 * meets "no room" mid-generation; actual allocation grows in blocks inside the
 * reservation and is what `allocatedBytes` reports.
 */
export class KvPool {
  private reserved = 0;
  private allocated = 0;

  constructor(readonly budgetBytes: number) {}

  get reservedBytes(): number {
    return this.reserved;
  }

  get allocatedBytes(): number {
    return this.allocated;
  }

  /** Returns false (never evicts behind the scheduler's back) when the budget cannot hold it. */
  tryReserve(bytes: number): boolean {
    if (this.reserved + bytes > this.budgetBytes) return false;
    this.reserved += bytes;
    return true;
  }

  unreserve(bytes: number): void {
    this.reserved -= bytes;
    if (this.reserved < 0) throw new Error(`KvPool: reservation went negative (${this.reserved})`);
  }

  noteAllocated(deltaBytes: number): void {
    this.allocated += deltaBytes;
    if (this.allocated < 0) throw new Error(`KvPool: allocation went negative (${this.allocated})`);
  }
}
