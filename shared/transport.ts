/**
 * The seam between the tile pipeline and the messaging system. The pipeline never sees a NATS
 * message: the JetStream adapter (transport/jetstream.ts) and the in-process adapter
 * (transport/embedded.ts) both implement these interfaces.
 */
import type { ErrorData } from './errors.ts';
import type { TileJob, TileOutcome } from './messages.ts';

/** One delivery of a job to a worker. Exactly one of ack / nak / term ends it. */
export interface JobDelivery {
  readonly job: TileJob;
  /** 1 on the first delivery. */
  readonly deliveries: number;
  ack(): Promise<void>;
  /** Hand the job back for redelivery after `delayMs`. */
  nak(delayMs: number): Promise<void>;
  /** Still working: extends the redelivery deadline. */
  working(): Promise<void>;
  /** Never redeliver. The caller has already published the failure outcome. */
  term(reason: ErrorData): Promise<void>;
}

/** The worker node's side. */
export interface WorkerTransport {
  /** Jobs as they arrive, at most `maxInFlight` unfinished at a time. Ends after `stop()`. */
  jobs(maxInFlight: number): AsyncIterable<JobDelivery>;
  /** Publishes a result or a failure; resolves once the transport has it durably. */
  publish(outcome: TileOutcome): Promise<void>;
  /** Stop pulling new jobs; the `jobs()` iteration ends. */
  stop(): void;
  /** How many times a job is delivered before it is dead-lettered. */
  readonly maxDeliveries: number;
}

/** What the coordinator remembers about a run between restarts. */
export interface RunState {
  /** Chips at publication positions < publishedUpTo (see chipAtPosition) have been published at least once. */
  publishedUpTo: number;
  chips: number;
}

export interface OutcomeSubscription {
  /** Outcomes that were retained from before this subscription (resume); 0 for a fresh run. */
  readonly replayed: number;
  close(): Promise<void>;
}

/** The coordinator's side. */
export interface CoordinatorTransport {
  /**
   * Delivers this run's outcomes to `onOutcome`: first those retained from an earlier
   * coordinator (resolving after them), then new ones as they arrive.
   */
  subscribe(runKey: string, onOutcome: (outcome: TileOutcome) => void): Promise<OutcomeSubscription>;
  submit(job: TileJob): Promise<void>;
  getState(runKey: string): Promise<RunState | null>;
  putState(runKey: string, state: RunState): Promise<void>;
  /** The run's output is written: retained outcomes and state may go. */
  finish(runKey: string): Promise<void>;
  /** Jobs waiting for a worker, all runs together (queue lag), or null when unknown. */
  pending(): Promise<number | null>;
}
