/**
 * A coordinator serving the scene queue: pulls scene jobs (a few at a time), claims each one's
 * record, runs it exactly as `run` would (resuming from retained results after a redelivery),
 * heartbeats while it runs, records the outcome and acks only then. Stopping: no more pulls,
 * the scenes in flight finish (`stop`) or go back to the queue at once (`handBack`).
 */
import { asCloudMaskError } from '../shared/errors.ts';
import type { SceneJob, SceneRecord, SceneState } from '../shared/scene-jobs.ts';
import { newSceneRecord } from '../shared/scene-jobs.ts';
import type { SceneDelivery, SceneQueue } from '../shared/transport.ts';
import type { SceneReport } from './scene-run.ts';

export type SceneServiceEvent =
  | { type: 'scene-claimed'; job: SceneJob; deliveries: number }
  | { type: 'scene-duplicate'; job: SceneJob; state: SceneState }
  | { type: 'scene-finished'; record: SceneRecord }
  | { type: 'scene-requeued'; record: SceneRecord };

export interface SceneServiceOptions {
  /** This coordinator's id, in scene records and the list of those alive. */
  coordinator: string;
  scenesInFlight: number;
  /** Runs one scene to its written outputs (throws a CloudMaskError on failure). */
  run: (job: SceneJob) => Promise<SceneReport>;
  /** The scene's output exists with the same parameter hash (skip it unless forced). */
  alreadyDone: (job: SceneJob) => Promise<boolean>;
  onEvent?: (e: SceneServiceEvent) => void;
  log?: (line: string) => void;
  /** How often this coordinator says it is alive, ms. Default 5000. */
  aliveEveryMs?: number;
}

export interface SceneService {
  /** Stop pulling; resolves `done` once the scenes in flight have finished. */
  stop(): void;
  /** Stop pulling and hand the scenes in flight back to the queue now. */
  handBack(): Promise<void>;
  readonly done: Promise<void>;
}

/** Retry delay of a scene whose run failed with a retryable error. */
const retryDelay = (deliveries: number): number => Math.min(30_000, 2000 * 2 ** (deliveries - 1));

interface InFlight {
  delivery: SceneDelivery;
  record: SceneRecord;
  revision: number;
  handedBack: boolean;
}

export function serveScenes(queue: SceneQueue, options: SceneServiceOptions): SceneService {
  const me = options.coordinator;
  const emit = options.onEvent ?? (() => {});
  const log = options.log ?? (() => {});
  const inFlight = new Set<InFlight>();
  const running = new Set<Promise<void>>();
  let stopping = false;

  /** Writes the record whatever its revision now is, unless another coordinator took the scene over. */
  const settle = async (f: InFlight, record: SceneRecord): Promise<void> => {
    let revision = f.revision;
    for (let i = 0; i < 10; i++) {
      if ((await queue.updateRecord(record, revision)) !== null) return;
      const now = await queue.getRecord(record.archive, record.key);
      if (!now || (now.record.coordinator !== me && now.record.state !== 'queued')) return;
      revision = now.revision;
    }
  };

  const claim = async (d: SceneDelivery): Promise<InFlight | null> => {
    const { job } = d;
    const stored = await queue.getRecord(job.archive, job.key);
    const rec = stored?.record;
    // Finished, or a second job for a scene another coordinator runs (see transport/scene-submit.ts).
    const duplicate = rec && (rec.state === 'done' || rec.state === 'skipped' || rec.state === 'failed' || (rec.state === 'running' && d.deliveries === 1 && rec.coordinator !== me));
    if (rec && duplicate) {
      emit({ type: 'scene-duplicate', job, state: rec.state });
      await d.ack();
      return null;
    }
    const record: SceneRecord = { ...(rec ?? newSceneRecord(job, Date.now())), state: 'running', coordinator: me, attempts: d.deliveries, startedAt: Date.now(), reason: null };
    const revision = await queue.updateRecord(record, stored?.revision ?? 0);
    if (revision === null) {
      // Someone wrote the record meanwhile: look again shortly.
      await d.nak(500);
      return null;
    }
    emit({ type: 'scene-claimed', job, deliveries: d.deliveries });
    return { delivery: d, record, revision, handedBack: false };
  };

  const runClaimed = async (f: InFlight): Promise<void> => {
    const { delivery: d } = f;
    const { job } = d;
    const beat = queue.ackWaitMs > 0 ? setInterval(() => void d.working().catch(() => {}), Math.max(200, Math.floor(queue.ackWaitMs / 3))) : null;
    let final: SceneRecord;
    let end: () => Promise<void>;
    try {
      if (!job.force && (await options.alreadyDone(job))) {
        final = { ...f.record, state: 'skipped', finishedAt: Date.now(), reason: 'output exists with the same inputs and parameters' };
      } else {
        const r = await options.run(job);
        final = { ...f.record, state: 'done', finishedAt: Date.now(), chips: r.chips, resumedChips: r.resumedChips, seconds: r.seconds, cloudFraction: r.cloudFraction, productMask: r.productMask?.source ?? null };
      }
      end = () => d.ack();
    } catch (err) {
      const e = asCloudMaskError(err);
      const reason = `${e.code}: ${e.message}`;
      if (e.retryable && d.deliveries < queue.maxDeliveries && !stopping) {
        final = { ...f.record, state: 'queued', coordinator: null, reason: `delivery ${d.deliveries} failed: ${reason}` };
        end = () => d.nak(retryDelay(d.deliveries));
      } else {
        final = { ...f.record, state: 'failed', finishedAt: Date.now(), reason };
        log(`scene ${job.input} failed: ${reason}`);
        end = async () => {
          await queue.deadLetter(final);
          await d.term();
        };
      }
    } finally {
      if (beat) clearInterval(beat);
    }
    if (f.handedBack) return;
    await settle(f, final);
    await end();
    emit(final.state === 'queued' ? { type: 'scene-requeued', record: final } : { type: 'scene-finished', record: final });
  };

  const handle = async (d: SceneDelivery): Promise<void> => {
    const f = await claim(d);
    if (!f) return;
    inFlight.add(f);
    try {
      await runClaimed(f);
    } finally {
      inFlight.delete(f);
    }
  };

  const alive = (): void => void queue.heartbeat(me).catch(() => {});
  alive();
  const aliveTimer = setInterval(alive, options.aliveEveryMs ?? 5000);
  const done = (async () => {
    try {
      for await (const d of queue.scenes(options.scenesInFlight)) {
        const p = handle(d).catch((err) => log(`scene ${d.job.input}: ${(err as Error).message}`));
        running.add(p);
        void p.finally(() => running.delete(p));
      }
      await Promise.all([...running]);
    } finally {
      clearInterval(aliveTimer);
      await queue.leave(me).catch(() => {});
    }
  })();

  return {
    done,
    stop: () => {
      stopping = true;
      queue.stop();
    },
    handBack: async () => {
      stopping = true;
      queue.stop();
      for (const f of inFlight) {
        f.handedBack = true;
        await settle(f, { ...f.record, state: 'queued', coordinator: null, reason: `handed back by ${me}` });
        await f.delivery.nak(0);
      }
    },
  };
}
