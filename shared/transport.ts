/**
 * The seam between the tile pipeline and the messaging system. The pipeline never sees a NATS
 * message: the JetStream adapter (transport/jetstream.ts) and the in-process adapter
 * (transport/embedded.ts) both implement these interfaces.
 */
import type { SceneSource } from '../raster/types.ts';
import type { ErrorData } from './errors.ts';
import type { TileJob, TileOutcome } from './messages.ts';
import type { ArchiveRecord, SceneJob, SceneRecord } from './scene-jobs.ts';

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
  /**
   * Queues a job. `lane` (shared/lanes.ts laneOf, default 0) says which neighbourhood it belongs
   * to, so a transport with several workers can keep neighbouring jobs on one worker; it never
   * changes whether or how often a job is delivered. One pool (embedded) ignores it.
   */
  submit(job: TileJob, lane?: number): Promise<void>;
  getState(runKey: string): Promise<RunState | null>;
  putState(runKey: string, state: RunState): Promise<void>;
  /** The run's output is written: retained outcomes and state may go. */
  finish(runKey: string): Promise<void>;
  /** Jobs waiting for a worker, all runs together (queue lag), or null when unknown. */
  pending(): Promise<number | null>;
  /**
   * A hint: the scene whose jobs are about to come. A transport whose workers share this process
   * (embedded) has them open its files meanwhile, so a remote scene's first reads do not wait for
   * their headers; jobs never depend on it.
   */
  prepare?(source: SceneSource): void;
}

/**
 * One delivery of a scene job to a coordinator. Exactly one of ack / nak / term ends it; ack
 * only once the scene's outputs are written (or it is known done), so a coordinator that dies
 * mid-scene leaves the job to be redelivered to another one.
 */
export interface SceneDelivery {
  readonly job: SceneJob;
  /** 1 on the first delivery. */
  readonly deliveries: number;
  ack(): Promise<void>;
  nak(delayMs: number): Promise<void>;
  /** Still running: extends the redelivery deadline. Call at least every ackWaitMs / 3. */
  working(): Promise<void>;
  /** Never redeliver (the scene's record already says why). */
  term(): Promise<void>;
}

/** A scene record read back, with the revision a conditional update must name. */
export interface StoredRecord {
  record: SceneRecord;
  revision: number;
}

/**
 * The archive tier: scene jobs queued once per scene identity + parameter hash, pulled by any
 * number of coordinators, and the records `status` and `report` are built from.
 */
export interface SceneQueue {
  /**
   * Records the archive and queues each scene whose record does not already say queued, running,
   * done or skipped (failed scenes, and all with `force`, are queued again). Returns the records
   * as they stand after the submission, with whether each one was queued by this call.
   */
  submit(archive: ArchiveRecord, jobs: SceneJob[]): Promise<{ queued: SceneRecord[]; notQueued: SceneRecord[] }>;
  /** Scene jobs as they arrive, at most `maxInFlight` unfinished. Ends after `stop()`. */
  scenes(maxInFlight: number): AsyncIterable<SceneDelivery>;
  stop(): void;
  getRecord(archive: string, key: string): Promise<StoredRecord | null>;
  /**
   * Writes a record if its revision is still `revision` (0: only if there is none); the new
   * revision, or null when someone else wrote it first.
   */
  updateRecord(record: SceneRecord, revision: number): Promise<number | null>;
  records(archive: string): Promise<SceneRecord[]>;
  getArchive(name: string): Promise<ArchiveRecord | null>;
  archives(): Promise<string[]>;
  /** Keeps this coordinator listed as alive (call every few seconds). */
  heartbeat(coordinator: string): Promise<void>;
  /** A coordinator stopping cleanly: no longer listed as alive. */
  leave(coordinator: string): Promise<void>;
  /** Keeps a failed scene's record in the dead-letter store, with its reason. */
  deadLetter(record: SceneRecord): Promise<void>;
  coordinators(): Promise<string[]>;
  /** Scene jobs waiting for a coordinator (the scene queue's lag), or null when unknown. */
  lag(): Promise<number | null>;
  /** How long an un-acked scene job waits before redelivery, ms. */
  readonly ackWaitMs: number;
  /** Deliveries of a scene job before it is failed for good. */
  readonly maxDeliveries: number;
}
