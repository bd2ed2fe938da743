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
  async acquire(): Promise<void> {
    while (this.used >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    this.used++;
  }
  /** Takes a slot without waiting (chips already in flight when a run resumes). */
  take(n = 1): void {
    this.used += n;
  }
  release(n = 1): void {
    this.used = Math.max(0, this.used - n);
    for (let i = 0; i < n && this.waiters.length > 0; i++) this.waiters.shift()!();
  }
  /** Wakes every waiter (they re-check). */
  wakeAll(): void {
    while (this.waiters.length > 0) this.waiters.shift()!();
  }
}
