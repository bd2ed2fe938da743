/**
 * The in-process transport: the embedded default (no server) and the reference behaviour the
 * JetStream adapter must match. Jobs wait in a FIFO; nak re-queues after a delay with the
 * delivery count raised; nothing is retained across processes, so there is nothing to resume.
 */
import type { ErrorData } from '../shared/errors.ts';
import type { TileJob, TileOutcome } from '../shared/messages.ts';
import type {
  CoordinatorTransport,
  JobDelivery,
  OutcomeSubscription,
  RunState,
  WorkerTransport,
} from '../shared/transport.ts';

interface Queued {
  job: TileJob;
  deliveries: number;
}

export class EmbeddedTransport implements CoordinatorTransport, WorkerTransport {
  readonly maxDeliveries: number;
  private readonly queue: Queued[] = [];
  private readonly subscribers = new Map<string, (o: TileOutcome) => void>();
  private readonly states = new Map<string, RunState>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private wake: (() => void) | null = null;
  private stopped = false;
  /** Deliveries handed out and not yet ended. */
  private unfinished = 0;

  constructor(options: { maxDeliveries?: number } = {}) {
    this.maxDeliveries = options.maxDeliveries ?? 3;
  }

  async submit(job: TileJob): Promise<void> {
    this.enqueue({ job, deliveries: 0 });
  }

  async subscribe(runKey: string, onOutcome: (o: TileOutcome) => void): Promise<OutcomeSubscription> {
    this.subscribers.set(runKey, onOutcome);
    return { replayed: 0, close: async () => void this.subscribers.delete(runKey) };
  }

  async publish(outcome: TileOutcome): Promise<void> {
    // Deliver on a later tick, as a real transport would: the worker's ack never races the stitch.
    setImmediate(() => this.subscribers.get(outcome.runKey)?.(outcome));
  }

  async getState(runKey: string): Promise<RunState | null> {
    return this.states.get(runKey) ?? null;
  }

  async putState(runKey: string, state: RunState): Promise<void> {
    this.states.set(runKey, { ...state });
  }

  async finish(runKey: string): Promise<void> {
    this.states.delete(runKey);
  }

  async pending(): Promise<number | null> {
    return this.queue.length;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.wake?.();
  }

  async *jobs(maxInFlight: number): AsyncIterable<JobDelivery> {
    while (!this.stopped) {
      if (this.queue.length === 0 || this.unfinished >= maxInFlight) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = null;
        continue;
      }
      const item = this.queue.shift()!;
      item.deliveries++;
      this.unfinished++;
      yield this.delivery(item);
    }
  }

  private enqueue(item: Queued): void {
    this.queue.push(item);
    this.wake?.();
  }

  private delivery(item: Queued): JobDelivery {
    let ended = false;
    const end = (): boolean => {
      if (ended) return false;
      ended = true;
      this.unfinished--;
      this.wake?.();
      return true;
    };
    return {
      job: item.job,
      deliveries: item.deliveries,
      ack: async () => void end(),
      working: async () => {},
      term: async (_reason: ErrorData) => void end(),
      nak: async (delayMs: number) => {
        if (!end()) return;
        const t = setTimeout(() => {
          this.timers.delete(t);
          this.enqueue(item);
        }, delayMs);
        this.timers.add(t);
      },
    };
  }
}
