/** A counting gate: bounds chips in flight per scene and across all scenes of a batch. */
export class FlowGate {
  private used = 0;
  private readonly waiters: (() => void)[] = [];
  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`in-flight limit must be a positive integer, got ${limit}`);
  }
  get inUse(): number {
    return this.used;
  }
  /** Waits until `n` slots are free together, then takes them (no partial holdings, no deadlock). */
  async acquire(n = 1): Promise<void> {
    if (n > this.limit) throw new RangeError(`cannot take ${n} slots of ${this.limit}`);
    while (this.used + n > this.limit) await new Promise<void>((r) => this.waiters.push(r));
    this.used += n;
  }
  /** Takes a slot without waiting (chips already in flight when a run resumes). */
  take(n = 1): void {
    this.used += n;
  }
  release(n = 1): void {
    this.used = Math.max(0, this.used - n);
    // Waiters re-check their own need.
    this.wakeAll();
  }
  /** Wakes every waiter (they re-check). */
  wakeAll(): void {
    while (this.waiters.length > 0) this.waiters.shift()!();
  }
}
