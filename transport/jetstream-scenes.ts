/**
 * The scene queue on JetStream: scene jobs in a work-queue stream (`<P>_SCENES`,
 * `<p>.scenes.<archive>`) read through one durable pull consumer that every coordinator shares;
 * per-scene and archive records in a KV bucket (`<p>_scenes`), written with revisions so
 * concurrent coordinators and submitters never overwrite each other; live coordinators in a
 * bucket whose entries expire (`<p>_coordinators`). All on file storage.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JsMsg, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { CloudMaskError } from '../shared/errors.ts';
import { decodeSceneJob, encodeSceneJob, type ArchiveRecord, type SceneJob, type SceneRecord } from '../shared/scene-jobs.ts';
import { names, type Names } from '../shared/subjects.ts';
import type { SceneDelivery, SceneQueue, StoredRecord } from '../shared/transport.ts';
import { submitScenes } from './scene-submit.ts';
import { jsDelivery } from './js-delivery.ts';

export interface SceneQueueOptions {
  prefix?: string;
  /** Redelivery deadline of a scene whose coordinator went silent, ms. Default 60000. */
  ackWaitMs?: number;
  /** Deliveries before a scene is failed for good. Default 3. */
  maxDeliveries?: number;
  /** A coordinator not heard from for this long is no longer listed as alive, ms. Default 30000. */
  aliveTtlMs?: number;
  onBadMessage?: (subject: string, error: CloudMaskError) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const json = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
const parse = <T>(b: Uint8Array): T => JSON.parse(new TextDecoder().decode(b)) as T;
const recordKey = (archive: string, key: string): string => `s.${archive}.${key}`;
/** KV keys allow [-/_=.a-zA-Z0-9]: anything else in a coordinator id becomes '_'. */
const aliveKey = (id: string): string => `c.${id.replace(/[^-_=a-zA-Z0-9]/g, '_')}`;

/** Creates the scene stream, the coordinators' consumer and the buckets if missing. Idempotent. */
export async function ensureSceneTopology(nc: NatsConnection, options: SceneQueueOptions = {}): Promise<Names> {
  const n = names(options.prefix);
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(n.scenesStream);
  } catch {
    await jsm.streams.add({ name: n.scenesStream, subjects: [n.scenesFilter], retention: RetentionPolicy.Workqueue, storage: StorageType.File, max_msg_size: 64 * 1024 });
  }
  try {
    await jsm.consumers.info(n.scenesStream, n.coordinatorsConsumer);
  } catch {
    await jsm.consumers.add(n.scenesStream, {
      durable_name: n.coordinatorsConsumer,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(options.ackWaitMs ?? 60_000),
      // Coordinators decide when a scene has failed for good; the server keeps redelivering.
      max_deliver: -1,
      max_ack_pending: 10_000,
      deliver_policy: DeliverPolicy.All,
    });
  }
  const kvm = new Kvm(nc);
  await kvm.create(n.recordsBucket, { history: 1, storage: StorageType.File });
  await kvm.create(n.aliveBucket, { history: 1, storage: StorageType.File, ttl: options.aliveTtlMs ?? 30_000 });
  return n;
}

export class JetStreamSceneQueue implements SceneQueue {
  readonly ackWaitMs: number;
  readonly maxDeliveries: number;
  private readonly js: JetStreamClient;
  private readonly n: Names;
  private recordsp: Promise<KV> | null = null;
  private alivep: Promise<KV> | null = null;
  /** stop() ends the iterations running now; a later scenes() starts afresh (another coordinator on this queue object). */
  private generation = 0;
  private unfinished = 0;
  private wake: (() => void) | null = null;

  constructor(
    private readonly nc: NatsConnection,
    private readonly options: SceneQueueOptions = {},
  ) {
    this.js = jetstream(nc);
    this.n = names(options.prefix);
    this.ackWaitMs = options.ackWaitMs ?? 60_000;
    this.maxDeliveries = options.maxDeliveries ?? 3;
  }

  private kv(): Promise<KV> {
    return (this.recordsp ??= new Kvm(this.nc).open(this.n.recordsBucket));
  }

  private aliveKv(): Promise<KV> {
    return (this.alivep ??= new Kvm(this.nc).open(this.n.aliveBucket));
  }

  async submit(archive: ArchiveRecord, jobs: SceneJob[]): Promise<{ queued: SceneRecord[]; notQueued: SceneRecord[] }> {
    const kv = await this.kv();
    const known = await this.getArchive(archive.name);
    await kv.put(`a.${archive.name}`, json({ ...archive, createdAt: known?.createdAt ?? archive.createdAt }));
    return submitScenes(this, jobs, async (job) => {
      await this.js.publish(this.n.sceneSubject(job.archive), encodeSceneJob(job), { timeout: 5000 });
    });
  }

  async getRecord(archive: string, key: string): Promise<StoredRecord | null> {
    const e = await (await this.kv()).get(recordKey(archive, key));
    if (!e || e.operation !== 'PUT' || e.value.length === 0) return null;
    return { record: parse<SceneRecord>(e.value), revision: e.revision };
  }

  async updateRecord(record: SceneRecord, revision: number): Promise<number | null> {
    const kv = await this.kv();
    const k = recordKey(record.archive, record.key);
    try {
      return revision === 0 ? await kv.create(k, json(record)) : await kv.update(k, json(record), revision);
    } catch (err) {
      // A wrong revision is an answer (someone wrote first); anything else is trouble.
      if (/wrong last sequence|key exists|wrong last msg/i.test((err as Error).message)) return null;
      throw new CloudMaskError('TRANSIENT_IO', `writing the record of ${record.archive}/${record.key}: ${(err as Error).message}`);
    }
  }

  /**
   * The latest value of every key under `filter` in `bucket`, read through one ephemeral pull
   * consumer (last value per subject): one request per thousand keys instead of a get per key,
   * and it ends by count, so a loaded server makes it slow, never stuck.
   */
  private async latest<T>(bucket: string, filter: string): Promise<Map<string, T>> {
    const jsm = await jetstreamManager(this.nc);
    const stream = `KV_${bucket}`;
    const prefix = `$KV.${bucket}.`;
    const info = await jsm.consumers.add(stream, {
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.LastPerSubject,
      filter_subject: `${prefix}${filter}`,
      inactive_threshold: nanos(60_000),
      mem_storage: true,
    });
    const out = new Map<string, T>();
    try {
      const consumer = await this.js.consumers.get(stream, info.name);
      let left = info.num_pending;
      for (let empty = 0; left > 0; ) {
        let got = 0;
        for await (const m of await consumer.fetch({ max_messages: Math.min(left, 1000), expires: 5000 })) {
          got++;
          left--;
          const op = m.headers?.get('KV-Operation');
          if (op === 'DEL' || op === 'PURGE' || m.data.length === 0) out.delete(m.subject.slice(prefix.length));
          else out.set(m.subject.slice(prefix.length), parse<T>(m.data));
        }
        if (got === 0 && ++empty >= 6) throw new CloudMaskError('TRANSIENT_IO', `reading ${bucket} ${filter}: ${left} entries did not arrive in 30 s`);
      }
    } finally {
      await jsm.consumers.delete(stream, info.name).catch(() => false);
    }
    return out;
  }

  async records(archive: string): Promise<SceneRecord[]> {
    return [...(await this.latest<SceneRecord>(this.n.recordsBucket, `s.${archive}.>`)).values()];
  }

  async getArchive(name: string): Promise<ArchiveRecord | null> {
    const e = await (await this.kv()).get(`a.${name}`);
    return e && e.operation === 'PUT' && e.value.length > 0 ? parse<ArchiveRecord>(e.value) : null;
  }

  async archives(): Promise<string[]> {
    return [...(await this.latest<ArchiveRecord>(this.n.recordsBucket, 'a.>')).values()].map((a) => a.name);
  }

  async heartbeat(coordinator: string): Promise<void> {
    await (await this.aliveKv()).put(aliveKey(coordinator), json({ id: coordinator, at: Date.now() }));
  }

  async coordinators(): Promise<string[]> {
    return [...(await this.latest<{ id: string }>(this.n.aliveBucket, 'c.>')).values()].map((c) => c.id);
  }

  /** Called by a coordinator that stops cleanly: it is no longer alive. */
  async leave(coordinator: string): Promise<void> {
    await (await this.aliveKv()).delete(aliveKey(coordinator)).catch(() => {});
  }

  async lag(): Promise<number | null> {
    try {
      const info = await (await jetstreamManager(this.nc)).consumers.info(this.n.scenesStream, this.n.coordinatorsConsumer);
      return info.num_pending;
    } catch {
      return null;
    }
  }

  stop(): void {
    this.generation++;
    this.wake?.();
  }

  async *scenes(maxInFlight: number): AsyncIterable<SceneDelivery> {
    const generation = this.generation;
    while (generation === this.generation) {
      const free = maxInFlight - this.unfinished;
      if (free <= 0) {
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
        continue;
      }
      let batch: AsyncIterable<JsMsg>;
      try {
        const consumer = await this.js.consumers.get(this.n.scenesStream, this.n.coordinatorsConsumer);
        // One at a time: a scene is long, and one coordinator should not hoard what another could start.
        batch = await consumer.fetch({ max_messages: 1, expires: 2000 });
      } catch {
        await sleep(1000);
        continue;
      }
      try {
        for await (const m of batch) {
          const delivery = this.toDelivery(m);
          if (delivery) yield delivery;
        }
      } catch {
        await sleep(500);
      }
    }
  }

  private toDelivery(m: JsMsg): SceneDelivery | null {
    let job: SceneJob;
    try {
      job = decodeSceneJob(m.data);
    } catch (err) {
      this.options.onBadMessage?.(m.subject, err instanceof CloudMaskError ? err : new CloudMaskError('BAD_MESSAGE', String(err)));
      m.term();
      return null;
    }
    this.unfinished++;
    return jsDelivery(m, job, () => {
      this.unfinished--;
      this.wake?.();
    });
  }

  /** Records a failed scene in the dead-letter stream (kept 14 days) with its reason. */
  async deadLetter(record: SceneRecord): Promise<void> {
    await this.js.publish(this.n.sceneDeadSubject(record.archive), json(record), { timeout: 5000 }).catch(() => {});
  }
}
