/**
 * Submission over any record store with conditional writes: a scene is queued only if its
 * record, read and rewritten at the same revision, says it needs it. Two submitters racing on
 * the same scene cannot both queue it: the second one's write names a stale revision, re-reads,
 * and finds it queued.
 */
import { CloudMaskError } from '../shared/errors.ts';
import { needsQueueing, newSceneRecord, type SceneJob, type SceneRecord } from '../shared/scene-jobs.ts';
import type { StoredRecord } from '../shared/transport.ts';

export interface RecordStore {
  getRecord(archive: string, key: string): Promise<StoredRecord | null>;
  /** Revision 0: create, failing if the record exists. */
  updateRecord(record: SceneRecord, revision: number): Promise<number | null>;
}

export async function submitScenes(store: RecordStore, jobs: SceneJob[], publish: (job: SceneJob) => Promise<void>): Promise<{ queued: SceneRecord[]; notQueued: SceneRecord[] }> {
  const queued: SceneRecord[] = [];
  const notQueued: SceneRecord[] = [];
  for (const job of jobs) {
    for (let attempt = 1; ; attempt++) {
      const current = await store.getRecord(job.archive, job.key);
      if (current && !needsQueueing(current.record, job.force)) {
        notQueued.push(current.record);
        break;
      }
      const record = { ...newSceneRecord(job, Date.now()), attempts: 0 };
      if ((await store.updateRecord(record, current?.revision ?? 0)) !== null) {
        // Record first, then the job. A failed publish puts the record back; a submitter killed in
        // between leaves a queued record with no job, which `submit --force` queues again
        // (coordinators drop the duplicate jobs that can make: see coordinator/scene-service.ts).
        try {
          await publish(job);
        } catch (err) {
          const now = await store.getRecord(job.archive, job.key);
          if (now) await store.updateRecord(current ? current.record : { ...record, state: 'failed', reason: 'its job could not be queued' }, now.revision).catch(() => null);
          throw err;
        }
        queued.push(record);
        break;
      }
      if (attempt >= 20) throw new CloudMaskError('TRANSIENT_IO', `scene ${job.archive}/${job.key}: its record kept changing under 20 submissions`);
    }
  }
  return { queued, notQueued };
}
