/**
 * The archive tier's vocabulary: a scene job (one scene of an archive, pulled by any
 * coordinator), the per-scene record that makes submission idempotent and the archive's counts
 * exact, the archive record, and the pure functions `status` and `report` are built from.
 * Scene jobs and records are small JSON documents (readable with `nats kv get`); tile messages
 * stay msgpack in shared/messages.ts.
 */
import { CloudMaskError } from './errors.ts';
import { resolveParams, type WorkflowParams } from './params.ts';

export const SCENE_JOB_VERSION = 1;

/** One scene of an archive, with everything a coordinator needs to run it. */
export interface SceneJob {
  type: 'scene-job';
  v: 1;
  archive: string;
  /** `<sceneId>-<paramHash>` (the scene's run key): its identity within the archive. */
  key: string;
  input: string;
  productMask: string;
  /** Output stem: the mask goes to `<outDir>/<name>.tif`. */
  name: string;
  /** The mask's path, as every coordinator sees the shared output volume. */
  out: string;
  params: WorkflowParams;
  /** Recompute even when the output exists with the same parameter hash. */
  force: boolean;
}

export type SceneState = 'queued' | 'running' | 'done' | 'skipped' | 'failed';
export const SCENE_STATES: readonly SceneState[] = ['queued', 'running', 'done', 'skipped', 'failed'];

/** What is known about one scene of an archive; one record per scene, so it is counted once. */
export interface SceneRecord {
  archive: string;
  key: string;
  name: string;
  input: string;
  output: string;
  state: SceneState;
  /** The coordinator running or having finished it. */
  coordinator: string | null;
  /** Deliveries of its scene job so far. */
  attempts: number;
  queuedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** Why it failed or was skipped. */
  reason: string | null;
  chips: number | null;
  resumedChips: number | null;
  seconds: number | null;
  cloudFraction: number | null;
  /** Where the product mask came from (MSK_CLASSI_B00, SCL, a file, none), once done. */
  productMask?: string | null;
}

export interface ArchiveRecord {
  name: string;
  params: WorkflowParams;
  outDir: string;
  /** Where the scenes came from (a manifest path, a STAC URL). */
  source: string;
  createdAt: number;
  /** Last submission. */
  submittedAt: number;
}

export type ArchiveCounts = Record<SceneState, number> & { total: number };

const ARCHIVE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export function checkArchiveName(name: string): string {
  if (!ARCHIVE_NAME.test(name)) throw new CloudMaskError('BAD_OPTION', `archive name must match [A-Za-z0-9_-]{1,64}, got ${JSON.stringify(name)}`);
  return name;
}

export function newSceneRecord(job: SceneJob, now: number): SceneRecord {
  return {
    archive: job.archive,
    key: job.key,
    name: job.name,
    input: job.input,
    output: job.out,
    state: 'queued',
    coordinator: null,
    attempts: 0,
    queuedAt: now,
    startedAt: null,
    finishedAt: null,
    reason: null,
    chips: null,
    resumedChips: null,
    seconds: null,
    cloudFraction: null,
  };
}

/**
 * A scene is queued on submission when it has no record or failed; with `force` also when done,
 * skipped or queued (a queued record whose job was lost), never while running.
 */
export function needsQueueing(record: SceneRecord | null, force: boolean): boolean {
  if (!record) return true;
  if (record.state === 'running') return false;
  return force || record.state === 'failed';
}

const bad = (what: string): CloudMaskError => new CloudMaskError('BAD_MESSAGE', `scene job: ${what}`);

export function encodeSceneJob(job: SceneJob): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(job));
}

/** Decodes and validates a scene job; anything malformed throws CloudMaskError('BAD_MESSAGE'). */
export function decodeSceneJob(bytes: Uint8Array): SceneJob {
  let m: Partial<SceneJob> | null;
  try {
    m = JSON.parse(new TextDecoder().decode(bytes)) as Partial<SceneJob> | null;
  } catch (err) {
    throw bad(`not JSON (${(err as Error).message})`);
  }
  if (!m || m.type !== 'scene-job') throw bad('expected type "scene-job"');
  if (m.v !== SCENE_JOB_VERSION) throw bad(`unsupported version ${String(m.v)} (this build speaks v${SCENE_JOB_VERSION})`);
  if (typeof m.archive !== 'string' || !ARCHIVE_NAME.test(m.archive)) throw bad('archive must match [A-Za-z0-9_-]{1,64}');
  if (typeof m.key !== 'string' || !/^[A-Za-z0-9_-]{1,200}$/.test(m.key)) throw bad('key must match [A-Za-z0-9_-]{1,200}');
  for (const f of ['input', 'productMask', 'name', 'out'] as const) if (typeof m[f] !== 'string' || m[f].length === 0) throw bad(`${f} must be a non-empty string`);
  if (typeof m.force !== 'boolean') throw bad('force must be a boolean');
  let params: WorkflowParams;
  try {
    params = resolveParams((m.params ?? {}) as Record<string, unknown>);
  } catch (err) {
    throw bad(`params: ${(err as Error).message}`);
  }
  return { ...(m as SceneJob), params };
}

export function countScenes(records: readonly SceneRecord[]): ArchiveCounts {
  const counts = { queued: 0, running: 0, done: 0, skipped: 0, failed: 0, total: records.length };
  for (const r of records) counts[r.state]++;
  return counts;
}

export interface ArchiveStatus extends ArchiveCounts {
  archive: string;
  /** Scenes finished (done or failed) per hour, over the span they ran in; null before the first. */
  scenesPerHour: number | null;
  /** Seconds until the queued and running scenes are done at that rate; null when unknown. */
  etaSeconds: number | null;
  failedScenes: { name: string; input: string; reason: string | null }[];
  /** Per coordinator: the scenes it finished and those it runs now. */
  coordinators: Record<string, { done: number; failed: number; running: number }>;
  coordinatorsAlive: string[];
  /** Scene jobs of all archives waiting for a coordinator. */
  queueLag: number | null;
}

/** The status `status` prints and `report` writes, from the records alone. */
export function archiveStatus(archive: string, records: readonly SceneRecord[], alive: string[], queueLag: number | null): ArchiveStatus {
  const counts = countScenes(records);
  // Skipped scenes take no time: they would inflate the rate.
  const finished = records.filter((r) => (r.state === 'done' || r.state === 'failed') && r.finishedAt !== null && r.startedAt !== null);
  let scenesPerHour: number | null = null;
  if (finished.length > 0) {
    const from = Math.min(...finished.map((r) => r.startedAt!));
    const to = Math.max(...finished.map((r) => r.finishedAt!));
    scenesPerHour = (finished.length * 3600_000) / Math.max(to - from, 1);
  }
  const left = counts.queued + counts.running;
  const etaSeconds = left === 0 ? 0 : scenesPerHour ? (left / scenesPerHour) * 3600 : null;
  const coordinators: ArchiveStatus['coordinators'] = {};
  for (const r of records) {
    if (!r.coordinator || (r.state !== 'done' && r.state !== 'failed' && r.state !== 'running')) continue;
    const c = (coordinators[r.coordinator] ??= { done: 0, failed: 0, running: 0 });
    c[r.state]++;
  }
  const failedScenes = records.filter((r) => r.state === 'failed').map((r) => ({ name: r.name, input: r.input, reason: r.reason }));
  return { archive, ...counts, scenesPerHour, etaSeconds, failedScenes, coordinators, coordinatorsAlive: [...alive].sort(), queueLag };
}
