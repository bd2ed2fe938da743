/**
 * The in-process transport: the embedded default (no server) and the twin the JetStream
 * adapter is held to (test/transport-contract.test.ts runs the same cases on both). Like
 * JetStream it carries bytes, not objects: jobs and outcomes are encoded on the way in and
 * decoded (and checked) on the way out through shared/messages.ts, so no delivery shares a
 * buffer with another (a retried in-memory job whose pixels were moved to a thread gets them
 * again) and a malformed message is rejected here as it would be there. Jobs wait in a FIFO;
 * nak re-queues after a delay; a delivery neither ended nor kept alive with working() within
 * the ack wait is redelivered; outcomes published while a run has no subscriber are kept for
 * the next one. Nothing outlives the process, so there is nothing to resume after a restart.
 */
import type { SceneSource } from '../raster/types.ts';
import { CloudMaskError, type ErrorData } from '../shared/errors.ts';
import { decodeJob, decodeOutcome, encodeMessage, MAX_MESSAGE_BYTES, type TileJob, type TileOutcome } from '../shared/messages.ts';
import type {
  CoordinatorTransport,
  JobDelivery,
  OutcomeSubscription,
  RunState,
  WorkerTransport,
} from '../shared/transport.ts';

interface Queued {
  /** What a subject would be on NATS, for messages about a bad message. */
  subject: string;
  bytes: Uint8Array;
  deliveries: number;
}

export interface EmbeddedOptions {
  /** Deliveries before a failing job is dead-lettered (the worker decides). Default 3. */
  maxDeliveries?: number;
  /** Redelivery deadline of a delivery that is neither ended nor kept alive, ms. Default 30000. */
  ackWaitMs?: number;
  /** Called for each message that failed validation (dropped, never delivered). */
  onBadMessage?: (subject: string, error: CloudMaskError) => void;
}

export class EmbeddedTransport implements CoordinatorTransport, WorkerTransport {
  readonly maxDeliveries: number;
  private readonly ackWaitMs: number;
  private readonly onBadMessage: (subject: string, error: CloudMaskError) => void;
  private readonly queue: Queued[] = [];
  private readonly subscribers = new Map<string, (o: TileOutcome) => void>();
  /** Outcomes of runs without a subscriber, kept for the next one (JetStream keeps them in ICM_RESULTS). */
  private readonly retained = new Map<string, Uint8Array[]>();
  private readonly states = new Map<string, RunState>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private wake: (() => void) | null = null;
  private stopped = false;
  /** Deliveries handed out and not yet ended. */
  private unfinished = 0;
  private preparer: ((source: SceneSource) => void) | null = null;

  constructor(options: EmbeddedOptions = {}) {
    this.maxDeliveries = options.maxDeliveries ?? 3;
    this.ackWaitMs = options.ackWaitMs ?? 30_000;
    this.onBadMessage = options.onBadMessage ?? (() => {});
  }

  /** One FIFO for one pool: the lane (affinity between workers) has nothing to choose here. */
  async submit(job: TileJob, lane = 0): Promise<void> {
    this.submitBytes(`jobs.${lane}.${job.runKey}.${job.chips[0]?.chipIndex ?? '?'}`, encode(job));
  }

  /** Queues raw bytes as a job message: what any publisher on the job subject could send. */
  submitBytes(subject: string, bytes: Uint8Array): void {
    this.enqueue({ subject, bytes, deliveries: 0 });
  }

  async subscribe(runKey: string, onOutcome: (o: TileOutcome) => void): Promise<OutcomeSubscription> {
    this.subscribers.set(runKey, onOutcome);
    const kept = this.retained.get(runKey) ?? [];
    this.retained.delete(runKey);
    for (const bytes of kept) this.deliverOutcome(runKey, bytes, onOutcome);
    return { replayed: kept.length, close: async () => void this.subscribers.delete(runKey) };
  }

  async publish(outcome: TileOutcome): Promise<void> {
    const bytes = encode(outcome);
    // Deliver on a later tick, as a real transport would: the worker's ack never races the stitch.
    setImmediate(() => {
      const subscriber = this.subscribers.get(outcome.runKey);
      if (subscriber) this.deliverOutcome(outcome.runKey, bytes, subscriber);
      else this.retained.set(outcome.runKey, [...(this.retained.get(outcome.runKey) ?? []), bytes]);
    });
  }

  async getState(runKey: string): Promise<RunState | null> {
    return this.states.get(runKey) ?? null;
  }

  async putState(runKey: string, state: RunState): Promise<void> {
    this.states.set(runKey, { ...state });
  }

  async finish(runKey: string): Promise<void> {
    // As JetStream's: the run's queued jobs go (subjects are jobs.<lane>.<runKey>.<chip>).
    for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.subject.split('.')[2] === runKey) this.queue.splice(i, 1);
    this.states.delete(runKey);
    this.retained.delete(runKey);
  }

  async pending(): Promise<number | null> {
    return this.queue.length;
  }

  prepare(source: SceneSource): void {
    this.preparer?.(source);
  }

  /** Who opens a scene ahead of its jobs (the embedded worker's chip pool). */
  onPrepare(fn: (source: SceneSource) => void): void {
    this.preparer = fn;
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
      let job: TileJob;
      try {
        job = decodeJob(item.bytes);
      } catch (err) {
        // As on JetStream: reported, terminated, never delivered.
        this.onBadMessage(item.subject, asBadMessage(err));
        continue;
      }
      this.unfinished++;
      yield this.delivery(item, job);
    }
  }

  private deliverOutcome(runKey: string, bytes: Uint8Array, onOutcome: (o: TileOutcome) => void): void {
    let outcome: TileOutcome;
    try {
      outcome = decodeOutcome(bytes);
    } catch (err) {
      this.onBadMessage(`results.${runKey}`, asBadMessage(err));
      return;
    }
    onOutcome(outcome);
  }

  private enqueue(item: Queued): void {
    this.queue.push(item);
    this.wake?.();
  }

  private later(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  private delivery(item: Queued, job: TileJob): JobDelivery {
    let ended = false;
    let deadline: NodeJS.Timeout;
    const end = (): boolean => {
      if (ended) return false;
      ended = true;
      clearTimeout(deadline);
      this.timers.delete(deadline);
      this.unfinished--;
      this.wake?.();
      return true;
    };
    // Silent past the ack wait: the worker is presumed dead and the job goes to another.
    const arm = (): void => {
      clearTimeout(deadline);
      this.timers.delete(deadline);
      deadline = this.later(this.ackWaitMs, () => {
        if (end() && !this.stopped) this.enqueue(item);
      });
    };
    arm();
    return {
      job,
      deliveries: item.deliveries,
      ack: async () => void end(),
      working: async () => {
        if (!ended) arm();
      },
      term: async (_reason: ErrorData) => void end(),
      nak: async (delayMs: number) => {
        if (!end()) return;
        this.later(delayMs, () => this.enqueue(item));
      },
    };
  }
}

function encode(message: TileJob | TileOutcome): Uint8Array {
  const bytes = encodeMessage(message);
  // JetStream refuses messages over the streams' max_msg_size; so does its twin, at once.
  if (bytes.length > MAX_MESSAGE_BYTES) throw new CloudMaskError('BAD_MESSAGE', `${message.type} ${message.runKey}: ${bytes.length} bytes is over the ${MAX_MESSAGE_BYTES}-byte limit`);
  return bytes;
}

function asBadMessage(err: unknown): CloudMaskError {
  return err instanceof CloudMaskError ? err : new CloudMaskError('BAD_MESSAGE', String(err));
}
