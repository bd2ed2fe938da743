/**
 * The in-process scene queue: `batch` without a server goes through the same queue, records and
 * counts as the cluster. Jobs are encoded and decoded as on the wire, records copied, so nothing
 * is shared by reference that the JetStream twin would not share. Nothing outlives the process;
 * a process that dies takes its queue with it, so there is no ack deadline to run out.
 */
import { decodeSceneJob, encodeSceneJob, type ArchiveRecord, type SceneJob, type SceneRecord } from '../shared/scene-jobs.ts';
import type { SceneDelivery, SceneQueue, StoredRecord } from '../shared/transport.ts';
import { submitScenes } from './scene-submit.ts';

interface Queued {
  bytes: Uint8Array;
  deliveries: number;
}

const copy = <T>(v: T): T => structuredClone(v);

export class EmbeddedSceneQueue implements SceneQueue {
  readonly ackWaitMs = 0;
  readonly maxDeliveries: number;
  private readonly queue: Queued[] = [];
  private readonly recordsByKey = new Map<string, StoredRecord>();
  private readonly archiveRecords = new Map<string, ArchiveRecord>();
  private readonly alive = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private wake: (() => void) | null = null;
  /** stop() ends the iterations running now; a later scenes() starts afresh (another coordinator on this queue object). */
  private generation = 0;
  private unfinished = 0;
  private revision = 0;

  constructor(options: { maxDeliveries?: number } = {}) {
    this.maxDeliveries = options.maxDeliveries ?? 3;
  }

  async submit(archive: ArchiveRecord, jobs: SceneJob[]): Promise<{ queued: SceneRecord[]; notQueued: SceneRecord[] }> {
    const known = this.archiveRecords.get(archive.name);
    this.archiveRecords.set(archive.name, copy({ ...archive, createdAt: known?.createdAt ?? archive.createdAt }));
    return submitScenes(this, jobs, async (job) => this.enqueue({ bytes: encodeSceneJob(job), deliveries: 0 }));
  }

  async getRecord(archive: string, key: string): Promise<StoredRecord | null> {
    const r = this.recordsByKey.get(`${archive}/${key}`);
    return r ? copy(r) : null;
  }

  async updateRecord(record: SceneRecord, revision: number): Promise<number | null> {
    const id = `${record.archive}/${record.key}`;
    if ((this.recordsByKey.get(id)?.revision ?? 0) !== revision) return null;
    this.recordsByKey.set(id, { record: copy(record), revision: ++this.revision });
    return this.revision;
  }

  async records(archive: string): Promise<SceneRecord[]> {
    return [...this.recordsByKey.values()].filter((r) => r.record.archive === archive).map((r) => copy(r.record));
  }

  async getArchive(name: string): Promise<ArchiveRecord | null> {
    const a = this.archiveRecords.get(name);
    return a ? copy(a) : null;
  }

  async archives(): Promise<string[]> {
    return [...this.archiveRecords.keys()];
  }

  async heartbeat(coordinator: string): Promise<void> {
    this.alive.set(coordinator, Date.now());
  }

  async leave(coordinator: string): Promise<void> {
    this.alive.delete(coordinator);
  }

  /** Failed scenes' records, as the dead-letter stream keeps them in the cluster. */
  readonly deadLetters: SceneRecord[] = [];

  async deadLetter(record: SceneRecord): Promise<void> {
    this.deadLetters.push(copy(record));
  }

  async coordinators(): Promise<string[]> {
    return [...this.alive.keys()];
  }

  async lag(): Promise<number | null> {
    return this.queue.length;
  }

  stop(): void {
    this.generation++;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.wake?.();
  }

  async *scenes(maxInFlight: number): AsyncIterable<SceneDelivery> {
    const generation = this.generation;
    while (generation === this.generation) {
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

  private delivery(item: Queued): SceneDelivery {
    let ended = false;
    const end = (): boolean => {
      if (ended) return false;
      ended = true;
      this.unfinished--;
      this.wake?.();
      return true;
    };
    return {
      job: decodeSceneJob(item.bytes),
      deliveries: item.deliveries,
      ack: async () => void end(),
      working: async () => {},
      term: async () => void end(),
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
