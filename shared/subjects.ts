/**
 * Every NATS subject, stream, consumer and bucket name, built here and nowhere else. The
 * deployment files (deploy/) and the KEDA scaler name the same consumer; a test checks they agree.
 */

/**
 * Lanes of the jobs stream: every job goes to one of JOB_LANES subjects by the columns of its
 * chips (shared/lanes.ts), each read through its own durable consumer, so a worker can prefer the
 * lanes it owns (neighbouring jobs, the same source tiles). Coordinators and workers must agree.
 */
export const JOB_LANES = 8;

/** Prefix of every subject; change it to run two independent clusters on one server. */
export const DEFAULT_PREFIX = 'icm';

export interface Names {
  jobsStream: string;
  resultsStream: string;
  deadStream: string;
  /** Base name of the lane consumers, and the one consumer of versions before lanes (removed when idle). */
  workersConsumer: string;
  /** The durable consumer of one lane, filtered on laneFilter(lane). */
  laneConsumer(lane: number): string;
  laneFilter(lane: number): string;
  stateBucket: string;
  /** Workers alive, each key refreshed within the bucket's TTL (the lane owners are derived from it). */
  workersBucket: string;
  jobSubject(runKey: string, chipIndex: number, lane?: number): string;
  jobsFilter: string;
  /** Every job of one run, on any lane (what `finish` purges). */
  runJobsFilter(runKey: string): string;
  resultSubject(runKey: string): string;
  resultsFilter: string;
  deadSubject(runKey: string): string;
  deadFilter: string;
  /** The archive tier: scene jobs, the coordinators' shared consumer, records, who is alive. */
  scenesStream: string;
  coordinatorsConsumer: string;
  sceneSubject(archive: string): string;
  scenesFilter: string;
  sceneDeadSubject(archive: string): string;
  recordsBucket: string;
  aliveBucket: string;
}

/** What a prefix may be: one subject token, usable in stream names. */
export const SUBJECT_PREFIX = /^[a-z0-9_-]+$/i;

export function names(prefix = DEFAULT_PREFIX): Names {
  if (!SUBJECT_PREFIX.test(prefix)) throw new RangeError(`subject prefix must match [A-Za-z0-9_-]+, got ${prefix}`);
  const up = prefix.toUpperCase().replace(/-/g, '_');
  return {
    jobsStream: `${up}_JOBS`,
    resultsStream: `${up}_RESULTS`,
    deadStream: `${up}_DEAD`,
    workersConsumer: `${prefix}-workers`,
    laneConsumer: (lane) => `${prefix}-workers-${checkLane(lane)}`,
    laneFilter: (lane) => `${prefix}.jobs.${checkLane(lane)}.>`,
    stateBucket: `${prefix}_runs`,
    workersBucket: `${prefix}_workers`,
    jobSubject: (runKey, chipIndex, lane = 0) => `${prefix}.jobs.${checkLane(lane)}.${runKey}.${chipIndex}`,
    jobsFilter: `${prefix}.jobs.>`,
    runJobsFilter: (runKey) => `${prefix}.jobs.*.${runKey}.*`,
    resultSubject: (runKey) => `${prefix}.results.${runKey}`,
    resultsFilter: `${prefix}.results.>`,
    deadSubject: (runKey) => `${prefix}.dead.${runKey}`,
    deadFilter: `${prefix}.dead.>`,
    scenesStream: `${up}_SCENES`,
    coordinatorsConsumer: `${prefix}-coordinators`,
    sceneSubject: (archive) => `${prefix}.scenes.${archive}`,
    scenesFilter: `${prefix}.scenes.>`,
    // Not a run key (those hold no dots): scene dead letters share ICM_DEAD with chip ones.
    sceneDeadSubject: (archive) => `${prefix}.dead.scene.${archive}`,
    recordsBucket: `${prefix}_scenes`,
    aliveBucket: `${prefix}_coordinators`,
  };
}

function checkLane(lane: number): number {
  if (!Number.isInteger(lane) || lane < 0 || lane >= JOB_LANES) throw new RangeError(`lane must be an integer in 0..${JOB_LANES - 1}, got ${lane}`);
  return lane;
}
