/**
 * The JetStream adapter's worker side: jobs pulled from the lane consumers (shared/lanes.ts),
 * those of the lanes this worker owns first (transport/worker-lanes.ts), only as many as it has
 * free slots; results and failures published before the ack.
 */
import { jetstream, jetstreamManager, type Consumer, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { CloudMaskError } from '../shared/errors.ts';
import { decodeJob, encodeMessage, type TileJob, type TileOutcome, type TileResult } from '../shared/messages.ts';
import { pickLane } from '../shared/lanes.ts';
import { names, type Names } from '../shared/subjects.ts';
import type { JobDelivery, WorkerTransport } from '../shared/transport.ts';
import { publishWithRetry, type JetStreamOptions } from './jetstream.ts';
import { laneCounts, LaneMembership } from './worker-lanes.ts';
import { jsDelivery } from './js-delivery.ts';
import { BUNDLE_MAX_BYTES, outcomeToWire, resultsToWire } from './outcome-wire.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface JetStreamWorkerOptions extends JetStreamOptions {
  /** This worker's identity, for its lane membership key. Default: a random one. */
  worker?: string;
  /** Called when the lanes this worker owns change (a worker joined, left or expired). */
  onLanes?: (owned: readonly number[], members: number) => void;
}

/** How long an idle worker waits before looking at the lanes again, ms: from the first to the last. */
const IDLE_POLL_MS = [20, 500] as const;
/** A worker's estimate of its job time, ms: lowest, first, highest. */
const JOB_MS = [100, 1000, 10_000] as const;
/** Idle this long, a worker also waits on lanes with jobs taken: redeliveries are not counted as pending. */
const REDELIVERY_LOOK_MS = 1000;

/** Results waiting to go as one message (transport/outcome-wire.ts), and who waits on it. */
interface Bundle {
  encoded: Uint8Array[];
  bytes: number;
  /** Sent once the current turn of the event loop is done (a microtask), stored when it resolves. */
  sent: Promise<void>;
}

/** How long a worker's pull loop has found nothing to take. */
interface IdleState {
  /** The next wait before looking again, ms. */
  pollMs: number;
  /** Since when no lane had a job waiting for it (performance.now()), or null. */
  since: number | null;
  /** Since when a thread would idle, or null. */
  threadSince: number | null;
}

export class JetStreamWorkerTransport implements WorkerTransport {
  readonly maxDeliveries: number;
  private readonly js: JetStreamClient;
  private readonly n: Names;
  private stopped = false;
  private unfinished = 0;
  /** About how long this worker holds a job, ms (see JOB_MS). */
  private jobMs: number = JOB_MS[1];
  private wake: (() => void) | null = null;
  private batch: ConsumerMessages | null = null;
  private signalStop!: () => void;
  private readonly stopping = new Promise<void>((resolve) => (this.signalStop = resolve));
  private readonly lanes: LaneMembership;
  private jsmp: Promise<JetStreamManager> | null = null;
  private readonly consumers = new Map<number, Promise<Consumer>>();
  /** Results published in this turn of the event loop, by subject: one message each when sent. */
  private readonly bundles = new Map<string, Bundle>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: JetStreamWorkerOptions = {},
  ) {
    this.js = jetstream(nc);
    this.n = names(options.prefix);
    this.maxDeliveries = options.maxDeliveries ?? 4;
    this.lanes = new LaneMembership(nc, this.n, options.worker ?? 'worker', options.onLanes);
  }

  /** Jobs taken from this worker's own lanes, and from others' (a thread would have idled). */
  readonly laneStats = { own: 0, helped: 0 };

  stop(): void {
    this.stopped = true;
    this.signalStop();
    // A fetch waiting on a server that is gone would hold the iteration (and the process) for its whole timeout.
    this.batch?.stop();
    this.wake?.();
  }

  /** `p`, or null as soon as stop() is called. */
  private untilStopped<T>(p: Promise<T>): Promise<T | null> {
    p.catch(() => {});
    return Promise.race([p, this.stopping.then(() => null)]);
  }

  /**
   * Results published together (a job's chips: the node publishes them at once) go as one
   * message, sent once the current turn of the event loop is done; each call resolves when that
   * message is stored. Failures go alone, to the dead-letter stream too.
   */
  async publish(outcome: TileOutcome): Promise<void> {
    if (outcome.type === 'tile-result') return this.bundled(outcome);
    const wire = outcomeToWire(outcome);
    await publishWithRetry(this.js, this.n.deadSubject(outcome.runKey), wire);
    await publishWithRetry(this.js, this.n.resultSubject(outcome.runKey), wire);
  }

  private bundled(result: TileResult): Promise<void> {
    const subject = this.n.resultSubject(result.runKey);
    const encoded = encodeMessage(result);
    let b = this.bundles.get(subject);
    // Full: it goes as it is (at its turn), and this result starts the next one.
    if (b && b.bytes + encoded.length > BUNDLE_MAX_BYTES) b = undefined;
    if (!b) {
      const bundle: Bundle = { encoded: [], bytes: 0, sent: Promise.resolve() };
      bundle.sent = bundle.sent.then(() => {
        if (this.bundles.get(subject) === bundle) this.bundles.delete(subject);
        return publishWithRetry(this.js, subject, resultsToWire(bundle.encoded));
      });
      this.bundles.set(subject, bundle);
      b = bundle;
    }
    b.encoded.push(encoded);
    b.bytes += encoded.length;
    return b.sent;
  }

  async *jobs(maxInFlight: number): AsyncIterable<JobDelivery> {
    await this.untilStopped(this.lanes.join());
    try {
      yield* this.pull(maxInFlight);
    } finally {
      // SIGTERM: the others take this worker's lanes at once instead of after the lease.
      await this.lanes.leave();
    }
  }

  /**
   * Fetches only as many jobs as there are free slots, from the lane chooseLane picks: an owned
   * one with jobs waiting, else (when a thread would idle) the nearest other lane with some.
   */
  private async *pull(maxInFlight: number): AsyncGenerator<JobDelivery> {
    const idle: IdleState = { pollMs: IDLE_POLL_MS[0], since: null, threadSince: null };
    while (!this.stopped) {
      const free = maxInFlight - this.unfinished;
      if (free <= 0) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
        continue;
      }
      let batch: ConsumerMessages | null;
      let helping = false;
      try {
        const choice = await this.chooseLane(maxInFlight, free, idle);
        if (!choice) continue;
        const { lane, take } = choice;
        const consumer = await this.untilStopped(this.consumer(lane));
        helping = !this.lanes.owned.includes(lane);
        // Small batches: a slow consumer holding many messages gets dropped by the server.
        batch = consumer && (await this.untilStopped(consumer.fetch({ max_messages: take, expires: 1000 })));
      } catch {
        this.consumers.clear();
        await this.untilStopped(sleep(1000));
        continue;
      }
      if (!batch) continue;
      if (this.stopped) batch.stop();
      this.batch = batch;
      try {
        for await (const m of batch) {
          const delivery = this.toDelivery(m);
          if (!delivery) continue;
          if (helping) this.laneStats.helped++;
          else this.laneStats.own++;
          yield delivery;
        }
      } catch {
        this.consumers.clear();
        await this.untilStopped(sleep(500));
      } finally {
        this.batch = null;
      }
    }
  }

  /**
   * The lane to fetch from and how many, or null after waiting a little (nothing to take yet).
   * A thread helps on other lanes only after waiting about one of its jobs' time for its own: the
   * owner of those jobs may just be a little behind, and each job taken from another lane
   * decodes source tiles that worker already has (docs/performance.md).
   */
  private async chooseLane(maxInFlight: number, free: number, idle: IdleState): Promise<{ lane: number; take: number } | null> {
    const counts = await this.untilStopped(laneCounts(await this.jsm(), this.n));
    if (!counts) return null;
    const now = performance.now();
    // The node holds two jobs a thread: below half its slots, a thread has nothing to do.
    if (this.unfinished * 2 >= maxInFlight) idle.threadSince = null;
    else idle.threadSince ??= now;
    const mayHelp = idle.threadSince !== null && now - idle.threadSince >= this.jobMs;
    const lane = pickLane(this.lanes.owned, counts.pending, mayHelp);
    if (lane !== null) {
      idle.since = null;
      idle.pollMs = IDLE_POLL_MS[0];
      return { lane, take: Math.min(free, counts.pending[lane]!, 4) };
    }
    idle.since ??= now;
    // A nak'ed job, or one whose worker died, comes back only to a pull request on its lane, and
    // is the owner's to take (a dead worker's lanes have new owners once its lease ends).
    const redelivery = now - idle.since >= REDELIVERY_LOOK_MS ? pickLane(this.lanes.owned, counts.taken, false) : null;
    if (redelivery !== null) return { lane: redelivery, take: 1 };
    const patience = idle.threadSince === null ? Infinity : idle.threadSince + this.jobMs - now;
    let ended = false;
    const woken = new Promise<void>((r) => (this.wake = () => ((ended = true), r())));
    await this.untilStopped(Promise.race([sleep(patience > 0 ? Math.min(idle.pollMs, patience + 1) : idle.pollMs), woken]));
    this.wake = null;
    // A job of this worker just ended: the coordinator publishes another in a moment.
    idle.pollMs = ended ? IDLE_POLL_MS[0] : Math.min(idle.pollMs * 2, IDLE_POLL_MS[1]);
    return null;
  }

  /**
   * A lane's consumer, looked up once (each lookup is a request to the server) and again after a
   * failed fetch, when it may have been recreated.
   */
  private consumer(lane: number): Promise<Consumer> {
    let c = this.consumers.get(lane);
    if (!c) {
      c = this.js.consumers.get(this.n.jobsStream, this.n.laneConsumer(lane));
      c.catch(() => this.consumers.delete(lane));
      this.consumers.set(lane, c);
    }
    return c;
  }

  private jsm(): Promise<JetStreamManager> {
    return (this.jsmp ??= jetstreamManager(this.nc).catch((err: unknown) => {
      this.jsmp = null;
      throw err;
    }));
  }

  private toDelivery(m: JsMsg): JobDelivery | null {
    let job: TileJob;
    try {
      job = decodeJob(m.data);
    } catch (err) {
      const error = err instanceof CloudMaskError ? err : new CloudMaskError('BAD_MESSAGE', String(err));
      this.options.onBadMessage?.(m.subject, error);
      // No reason text: nats-server 2.9 does not parse "+TERM <reason>" and would redeliver.
      m.term();
      return null;
    }
    this.unfinished++;
    const started = performance.now();
    return jsDelivery(m, job, () => {
      // A running mean of how long this worker holds a job (from delivery to its end).
      this.jobMs = Math.min(JOB_MS[2], Math.max(JOB_MS[0], 0.8 * this.jobMs + 0.2 * (performance.now() - started)));
      this.unfinished--;
      this.wake?.();
    });
  }
}

