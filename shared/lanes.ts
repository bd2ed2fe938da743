/**
 * Affinity between neighbouring jobs and workers, as pure functions (docs/performance.md).
 *
 * A scene's chip columns are cut into JOB_LANES vertical bands; a job goes to the lane of its
 * middle column. The coordinator publishes rows in order with a bounded number of chips in
 * flight, so every lane gets work at the same time, and a worker that keeps taking the same
 * lanes keeps meeting the same source-tile columns: two workers owning half the lanes each decode
 * little more than one worker does. Lanes are owned by the live workers in the order of their
 * membership keys, contiguously; any worker may still take any lane's jobs (an idle one steals
 * the nearest), so ownership decides only preference, never whether a job is done.
 */
import { JOB_LANES } from './subjects.ts';

/** The lane of a job whose chips sit in columns `cols` of a scene `sceneCols` chips wide. */
export function laneOf(sceneCols: number, cols: readonly number[], lanes = JOB_LANES): number {
  if (!Number.isInteger(sceneCols) || sceneCols < 1) throw new RangeError(`sceneCols must be a positive integer, got ${sceneCols}`);
  if (cols.length === 0) throw new RangeError('a job has at least one chip');
  const middle = (Math.min(...cols) + Math.max(...cols) + 1) / 2;
  return Math.min(lanes - 1, Math.floor((middle * lanes) / sceneCols));
}

/**
 * The lanes worker `index` of `members` owns: with fewer workers than lanes a contiguous run
 * (worker i: lanes l with floor(l * members / lanes) = i), with more one lane, shared.
 */
export function ownedLanes(index: number, members: number, lanes = JOB_LANES): number[] {
  if (!Number.isInteger(members) || members < 1 || !Number.isInteger(index) || index < 0 || index >= members) {
    throw new RangeError(`worker index must be in 0..${members - 1}, got ${index}`);
  }
  if (members > lanes) return [Math.floor((index * lanes) / members)];
  const out: number[] = [];
  for (let l = 0; l < lanes; l++) if (Math.floor((l * members) / lanes) === index) out.push(l);
  return out;
}

/**
 * Which lane to take jobs from, given the jobs waiting per lane: an owned lane with the most
 * waiting; when none has any and `mayHelp` (a thread of this worker would otherwise idle), the
 * other lane nearest to the owned ones (the source tiles it needs are the likeliest to be in
 * this worker's cache), the most waiting first among equals. Null: nothing to take.
 */
export function pickLane(owned: readonly number[], pending: readonly number[], mayHelp: boolean): number | null {
  const best = (candidates: number[], rank: (l: number) => number): number | null => {
    let pick: number | null = null;
    for (const l of candidates) if ((pending[l] ?? 0) > 0 && (pick === null || rank(l) < rank(pick))) pick = l;
    return pick;
  };
  const own = best([...owned], (l) => -(pending[l] ?? 0));
  if (own !== null || !mayHelp) return own;
  const distance = (l: number): number => Math.min(...owned.map((o) => Math.abs(o - l)));
  const others = pending.map((_, l) => l).filter((l) => !owned.includes(l));
  return best(others, (l) => distance(l) * 1e9 - (pending[l] ?? 0));
}

/** "0-3", "5", "0-7": a run of lanes as a worker's log says it. */
export function formatLanes(lanes: readonly number[]): string {
  if (lanes.length === 0) return 'none';
  const first = lanes[0]!;
  const last = lanes[lanes.length - 1]!;
  return last - first === lanes.length - 1 ? (first === last ? `${first}` : `${first}-${last}`) : lanes.join(',');
}
