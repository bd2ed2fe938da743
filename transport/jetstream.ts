/**
 * The JetStream adapter: the topology and the coordinator's side (the worker's is in
 * transport/jetstream-worker.ts). Jobs: a work-queue stream read through one durable pull
 * consumer per lane (shared/lanes.ts), each worker preferring the lanes it owns, so neighbouring
 * jobs go to the same worker. Results: their own stream, retained until the run's output is
 * written, so a restarted coordinator replays them instead of recomputing. Run state: a KV
 * bucket. All on file storage, so a restarted server loses nothing.
 */
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { CloudMaskError } from '../shared/errors.ts';
import { encodeMessage, MAX_MESSAGE_BYTES, type TileJob, type TileOutcome } from '../shared/messages.ts';
import { JOB_LANES, names, type Names } from '../shared/subjects.ts';
import type { CoordinatorTransport, OutcomeSubscription, RunState } from '../shared/transport.ts';
import { outcomesFromWire, type WireMessage } from './outcome-wire.ts';

export interface JetStreamOptions {
  /** Subject prefix (see shared/subjects.ts). Default 'icm'. */
  prefix?: string;
  /** Redelivery deadline of an un-acked job, ms; workers heartbeat at a third of it. Default 30000. */
  ackWaitMs?: number;
  /** Deliveries before a failing job is dead-lettered. Default 4. */
  maxDeliveries?: number;
  /** Called for each message that failed validation (it is terminated, never retried). */
  onBadMessage?: (subject: string, error: CloudMaskError) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Creates (or updates) the streams, the workers' consumer and the state bucket. Idempotent. */
export async function ensureTopology(nc: NatsConnection, options: JetStreamOptions = {}): Promise<Names> {
  const n = names(options.prefix);
  const jsm = await jetstreamManager(nc);
  const streams = [
    { name: n.jobsStream, subjects: [n.jobsFilter], retention: RetentionPolicy.Workqueue, max_age: 0 },
    { name: n.resultsStream, subjects: [n.resultsFilter], retention: RetentionPolicy.Limits, max_age: nanos(7 * 24 * 3600 * 1000) },
    { name: n.deadStream, subjects: [n.deadFilter], retention: RetentionPolicy.Limits, max_age: nanos(14 * 24 * 3600 * 1000) },
  ];
  for (const s of streams) {
    const config = { ...s, storage: StorageType.File, max_msg_size: MAX_MESSAGE_BYTES };
    try {
      await jsm.streams.info(s.name);
    } catch {
      await jsm.streams.add(config);
    }
  }
  await dropLegacyConsumer(jsm, n);
  for (let lane = 0; lane < JOB_LANES; lane++) {
    try {
      await jsm.consumers.info(n.jobsStream, n.laneConsumer(lane));
    } catch {
      await jsm.consumers.add(n.jobsStream, {
        durable_name: n.laneConsumer(lane),
        filter_subject: n.laneFilter(lane),
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(options.ackWaitMs ?? 30_000),
        // Workers decide when a job is dead: the server must keep redelivering jobs whose worker died.
        max_deliver: -1,
        max_ack_pending: 10_000,
        deliver_policy: DeliverPolicy.All,
      });
    }
  }
  await openStateBucket(nc, n);
  await openWorkersBucket(nc, n, options.ackWaitMs ?? 30_000);
  return n;
}

/**
 * The one unfiltered consumer of versions before lanes: a work-queue stream allows no filtered
 * consumer beside it. Removed when it holds nothing; with jobs still on it the upgrade must wait.
 */
async function dropLegacyConsumer(jsm: JetStreamManager, n: Names): Promise<void> {
  const info = await jsm.consumers.info(n.jobsStream, n.workersConsumer).catch(() => null);
  if (!info) return;
  const left = info.num_pending + info.num_ack_pending;
  if (left > 0) {
    throw new CloudMaskError('BAD_INPUT', `consumer ${n.workersConsumer} of an earlier version still holds ${left} jobs: let its workers finish them before starting this version (or delete it: nats consumer rm ${n.jobsStream} ${n.workersConsumer})`);
  }
  await jsm.consumers.delete(n.jobsStream, n.workersConsumer);
}

/** Live workers; the bucket's TTL is their lease (see transport/worker-lanes.ts). The first creator sets it. */
async function openWorkersBucket(nc: NatsConnection, n: Names, leaseMs: number): Promise<void> {
  const kvm = new Kvm(nc);
  try {
    await (await kvm.open(n.workersBucket)).status();
  } catch {
    await kvm.create(n.workersBucket, { history: 1, storage: StorageType.File, ttl: leaseMs });
  }
}

function openStateBucket(nc: NatsConnection, n: Names): Promise<KV> {
  return new Kvm(nc).create(n.stateBucket, { history: 1, storage: StorageType.File });
}

/** Retries a publish through a server restart; gives up after about a minute. */
export async function publishWithRetry(js: JetStreamClient, subject: string, message: Uint8Array | WireMessage): Promise<void> {
  const { data, headers } = message instanceof Uint8Array ? { data: message, headers: undefined } : message;
  let delay = 200;
  for (let attempt = 1; ; attempt++) {
    try {
      await js.publish(subject, data, { timeout: 5000, headers });
      return;
    } catch (err) {
      if (attempt >= 12) throw new CloudMaskError('TRANSIENT_IO', `publish to ${subject} failed ${attempt} times: ${(err as Error).message}`);
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
    }
  }
}

export class JetStreamCoordinatorTransport implements CoordinatorTransport {
  private readonly js: JetStreamClient;
  private readonly n: Names;
  private kvp: Promise<KV> | null = null;
  private jsmp: Promise<JetStreamManager> | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: JetStreamOptions = {},
  ) {
    this.js = jetstream(nc);
    this.n = names(options.prefix);
  }

  private kv(): Promise<KV> {
    return (this.kvp ??= openStateBucket(this.nc, this.n));
  }

  private jsm(): Promise<JetStreamManager> {
    return (this.jsmp ??= jetstreamManager(this.nc));
  }

  async submit(job: TileJob, lane = 0): Promise<void> {
    await publishWithRetry(this.js, this.n.jobSubject(job.runKey, job.chips[0].chipIndex, lane), encodeMessage(job));
  }

  /** The durable results consumer of one run (one coordinator at a time per run). */
  private resultsConsumer(runKey: string): string {
    return `coord-${runKey}`;
  }

  async subscribe(runKey: string, onOutcome: (o: TileOutcome) => void): Promise<OutcomeSubscription> {
    const jsm = await this.jsm();
    const durable = this.resultsConsumer(runKey);
    // A restarted coordinator replays the run's results from the start: drop the old cursor.
    await jsm.consumers.delete(this.n.resultsStream, durable).catch(() => false);
    // nats-server 2.9 has no multi-filter consumers, so no ordered consumer here: a durable with
    // explicit acks survives server restarts and redelivers what a dropped connection lost.
    // Acks go per burst (AckAll on the last result of what one socket read delivered): one ack
    // for each result cost the coordinator a write syscall per chip, 841 a full tile.
    const info = await jsm.consumers.add(this.n.resultsStream, {
      durable_name: durable,
      ack_policy: AckPolicy.All,
      ack_wait: nanos(10_000),
      deliver_policy: DeliverPolicy.All,
      filter_subject: this.n.resultSubject(runKey),
      max_ack_pending: 1000,
      inactive_threshold: nanos(24 * 3600 * 1000),
    });
    const retained = info.num_pending;
    const consumer = await this.js.consumers.get(this.n.resultsStream, durable);
    const messages = await consumer.consume({ max_messages: 64 });
    let seen = 0;
    let lastUnacked: JsMsg | null = null;
    let ackScheduled = false;
    const ackBurst = (): void => {
      ackScheduled = false;
      lastUnacked?.ack();
      lastUnacked = null;
    };
    let replayDone!: () => void;
    const replayed = new Promise<void>((r) => (replayDone = r));
    if (retained === 0) replayDone();
    const loop = (async () => {
      for await (const m of messages) {
        try {
          for (const o of outcomesFromWire(m.data, m.headers)) onOutcome(o);
        } catch (err) {
          const error = err instanceof CloudMaskError ? err : new CloudMaskError('BAD_MESSAGE', String(err));
          this.options.onBadMessage?.(m.subject, error);
        }
        lastUnacked = m;
        if (!ackScheduled) {
          ackScheduled = true;
          setImmediate(ackBurst);
        }
        if (++seen >= retained) replayDone();
      }
      ackBurst();
    })();
    await replayed;
    return {
      replayed: retained,
      close: async () => {
        await messages.close();
        await loop.catch(() => {});
      },
    };
  }

  async getState(runKey: string): Promise<RunState | null> {
    const entry = await (await this.kv()).get(runKey);
    if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) return null;
    return JSON.parse(new TextDecoder().decode(entry.value)) as RunState;
  }

  async putState(runKey: string, state: RunState): Promise<void> {
    await (await this.kv()).put(runKey, new TextEncoder().encode(JSON.stringify(state)));
  }

  async finish(runKey: string): Promise<void> {
    const jsm = await this.jsm();
    // Jobs still queued (a scene that failed): workers would fail them one by one, and their
    // failures, published after the purge below, would fail the scene's next attempt at once.
    await jsm.streams.purge(this.n.jobsStream, { filter: this.n.runJobsFilter(runKey) });
    await jsm.consumers.delete(this.n.resultsStream, this.resultsConsumer(runKey)).catch(() => false);
    await jsm.streams.purge(this.n.resultsStream, { filter: this.n.resultSubject(runKey) });
    await (await this.kv()).purge(runKey);
  }

  async pending(): Promise<number | null> {
    return (await this.workerActivity())?.pending ?? null;
  }

  /**
   * What the lane consumers show together: jobs waiting, jobs taken and not yet acked, and pull
   * requests waiting (a worker keeps one open while it fetches, so 0 with jobs waiting and none
   * taken means no worker is connected). Null when the server does not answer.
   */
  async workerActivity(): Promise<{ consumer: string; pending: number; taken: number; pulling: number } | null> {
    try {
      const lanes = new Set(Array.from({ length: JOB_LANES }, (_, l) => this.n.laneConsumer(l)));
      const all = (await (await this.jsm()).consumers.list(this.n.jobsStream).next()).filter((c) => lanes.has(c.name));
      const sum = (f: (c: (typeof all)[number]) => number): number => all.reduce((a, c) => a + f(c), 0);
      return { consumer: `${this.n.workersConsumer}-0..${JOB_LANES - 1}`, pending: sum((c) => c.num_pending), taken: sum((c) => c.num_ack_pending), pulling: sum((c) => c.num_waiting) };
    } catch {
      return null;
    }
  }
}
