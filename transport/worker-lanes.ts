/**
 * A worker's lanes on JetStream (docs/performance.md, affinity): which workers are alive, which
 * lanes this one owns, and how many jobs wait on each lane's consumer.
 *
 * Membership is one key per worker in the workers bucket, whose TTL is the lease: a worker
 * re-puts its key every second (TTL / 3 when shorter) and purges it when it stops; a worker killed with -9 stops
 * renewing and its key expires on the server. Every worker sorts the live keys the same way and
 * derives the owners from the order (shared/lanes.ts ownedLanes), so no claim is ever contended:
 * while two workers disagree (one has not seen a join or an expiry yet) a lane may have two
 * owners or none for a few seconds, which costs decodes, never a job (any worker may take any
 * lane's jobs; jobs are only ever ended by ack, nak, term or the ack wait).
 */
import { randomBytes } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { ownedLanes } from '../shared/lanes.ts';
import { JOB_LANES, type Names } from '../shared/subjects.ts';

const ALL_LANES = Array.from({ length: JOB_LANES }, (_, l) => l);
/**
 * How often a worker renews its key and reads the others', at most, ms (a third of the lease when
 * that is shorter). A joining worker is seen by the others within this time: until then the first
 * one still owns every lane, and both take the same jobs' tiles.
 */
const REFRESH_MS = 1000;

/** A worker id as a KV key token ([-_=a-zA-Z0-9]), made unique per process. */
export function memberKey(worker: string): string {
  return `${worker.replace(/[^-_=a-zA-Z0-9]/g, '_') || 'worker'}.${randomBytes(4).toString('hex')}`;
}

/** What each lane's consumer holds, read in one request for all lanes. */
export interface LaneCounts {
  /** Jobs never delivered yet. */
  pending: number[];
  /**
   * Jobs delivered and not yet acked: held by workers, or waiting for redelivery (a nak'ed job,
   * or one whose worker died), which the server does not count as pending.
   */
  taken: number[];
}

export async function laneCounts(jsm: JetStreamManager, n: Names): Promise<LaneCounts> {
  const pending = new Array<number>(JOB_LANES).fill(0);
  const taken = new Array<number>(JOB_LANES).fill(0);
  const byName = new Map(ALL_LANES.map((l) => [n.laneConsumer(l), l]));
  for (const info of await jsm.consumers.list(n.jobsStream).next()) {
    const lane = byName.get(info.name);
    if (lane === undefined) continue;
    pending[lane] = info.num_pending;
    taken[lane] = info.num_ack_pending;
  }
  return { pending, taken };
}

export class LaneMembership {
  /** Lanes this worker owns; all of them until it has seen the others (and whenever it cannot). */
  owned: number[] = ALL_LANES;
  /** Live workers seen at the last refresh (this one included). */
  members = 1;
  readonly key: string;
  private kv: KV | null = null;
  private jsm: JetStreamManager | null = null;
  private timer: NodeJS.Timeout | null = null;
  private left = false;
  private refreshing = false;
  /** Whether a refresh has read the members yet (the first one always reports). */
  private seen = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly n: Names,
    worker: string,
    private readonly onChange: (owned: readonly number[], members: number) => void = () => {},
  ) {
    this.key = memberKey(worker);
  }

  /** Joins and keeps the key alive until leave(). Never throws: without membership it owns every lane. */
  async join(): Promise<void> {
    let every = REFRESH_MS;
    try {
      this.kv = await new Kvm(this.nc).open(this.n.workersBucket);
      this.jsm = await jetstreamManager(this.nc);
      const ttl = (await this.kv.status()).ttl;
      if (ttl > 0) every = Math.max(200, Math.min(REFRESH_MS, Math.floor(ttl / 3)));
    } catch {
      this.kv = null;
    }
    await this.refresh();
    if (this.left) return;
    this.timer = setInterval(() => void this.refresh(), every);
    this.timer.unref();
  }

  /** Renews this worker's key, then reads who is alive and which lanes are this worker's. */
  async refresh(): Promise<void> {
    if (!this.kv || !this.jsm || this.left || this.refreshing) return;
    this.refreshing = true;
    try {
      await this.kv.put(this.key, new TextEncoder().encode(String(Date.now())));
      // The bucket's subjects are its live keys: expired ones are gone, and leave() purges (a
      // delete would leave a marker on the subject). One request, no consumer (kv.keys() makes one).
      const info = await this.jsm.streams.info(this.stream(), { subjects_filter: `${this.subjectPrefix()}>` });
      const seen = new Set<string>([this.key]);
      for (const subject of Object.keys(info.state.subjects ?? {})) seen.add(subject.slice(this.subjectPrefix().length));
      const keys = [...seen].sort();
      if (this.left) return;
      const owned = ownedLanes(keys.indexOf(this.key), keys.length);
      const changed = !this.seen || owned.join() !== this.owned.join() || keys.length !== this.members;
      this.seen = true;
      this.members = keys.length;
      this.owned = owned;
      if (changed) this.onChange(owned, keys.length);
    } catch {
      // Server unreachable: keep the last view; the jobs loop retries on its own.
    } finally {
      this.refreshing = false;
    }
  }

  /** The KV bucket's stream and its subjects, as nats.js names them. */
  private stream(): string {
    return `KV_${this.n.workersBucket}`;
  }

  private subjectPrefix(): string {
    return `$KV.${this.n.workersBucket}.`;
  }

  /** Stops renewing and removes the key at once, so the others take this worker's lanes now. */
  async leave(boundMs = 2000): Promise<void> {
    this.left = true;
    if (this.timer) clearInterval(this.timer);
    if (!this.jsm) return;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => (timer = setTimeout(r, boundMs)));
    const purged = this.jsm.streams.purge(this.stream(), { filter: `${this.subjectPrefix()}${this.key}` });
    await Promise.race([purged.catch(() => {}), bound]);
    clearTimeout(timer);
  }
}
