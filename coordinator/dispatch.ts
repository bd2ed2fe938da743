/**
 * Publishing a scene's chips as tile jobs: publication order (rows back and forth), grouping of
 * neighbouring chips into one job, bounded flow, and the run state that lets a restarted
 * coordinator continue where the last one stopped publishing.
 */
import type { SceneReader, SceneSource, Window } from '../raster/types.ts';
import { laneOf } from '../shared/lanes.ts';
import { MAX_CHIPS_PER_JOB, unionWindow, type ChipWindow, type TileJob } from '../shared/messages.ts';
import type { WorkflowParams } from '../shared/params.ts';
import { chipAt, inferenceWindow, sameWindow, type ChipPlan, type SceneLayout } from '../shared/tiling.ts';
import type { CoordinatorTransport } from '../shared/transport.ts';
import type { FlowGate } from './flow.ts';

/** A scene's last chips are published one per job (see nextGroup). */
const TAIL_CHIPS = 16;

function cutWindow(scene: Uint16Array, width: number, height: number, win: Window): Uint16Array {
  const out = new Uint16Array(12 * win.width * win.height);
  for (let b = 0; b < 12; b++) {
    for (let r = 0; r < win.height; r++) {
      const y = win.y + r;
      if (y < 0 || y >= height) continue;
      const x0 = Math.max(win.x, 0);
      const x1 = Math.min(win.x + win.width, width);
      if (x1 <= x0) continue;
      const src = b * width * height + y * width;
      out.set(scene.subarray(src + x0, src + x1), b * win.width * win.height + r * win.width + (x0 - win.x));
    }
  }
  return out;
}

/**
 * The chip published at position `p`: chip rows top to bottom, alternately left to right and
 * right to left. Workers' tile caches then sweep back and forth: the tiles a row ends with are the
 * ones the next row starts with, and the least recently used ones are needed last (a cache swept
 * always from the left evicts exactly the tiles the next row needs first).
 */
export function chipAtPosition(layout: SceneLayout, p: number): number {
  const cols = layout.cols.length;
  const row = Math.floor(p / cols);
  const k = p % cols;
  return row * cols + (row % 2 === 0 ? k : cols - 1 - k);
}

/**
 * The next job's chips: up to `perJob` chips at consecutive positions (see chipAtPosition) of
 * one chip row from position `start`, skipping chips already stitched (a stitched chip also ends
 * a group, so jobs stay contiguous). The scene's last `tail` positions go one chip per job, so
 * the workers' threads finish close together instead of one idling while another runs a whole
 * job. `next` is the position after the group.
 */
export function nextGroup(layout: SceneLayout, isDone: (i: number) => boolean, start: number, perJob: number, tail = 0): { chips: ChipPlan[]; next: number } {
  const chips: ChipPlan[] = [];
  let p = start;
  while (p < layout.count && chips.length < (p >= layout.count - tail ? 1 : perJob)) {
    const index = chipAtPosition(layout, p);
    if (isDone(index)) {
      if (chips.length > 0) break;
      p++;
      continue;
    }
    const chip = chipAt(layout, index);
    if (chips.length > 0 && chip.row !== chips[0].row) break;
    chips.push(chip);
    p++;
  }
  return { chips, next: p };
}

/** A chip as a job carries it: with its inference window where that is smaller than the chip. */
export function chipWindow(c: ChipPlan, margin: number | null): ChipWindow {
  const out: ChipWindow = { chipIndex: c.index, read: c.read, write: c.write };
  if (margin === null) return out;
  const infer = inferenceWindow(c.read, c.write, margin);
  if (!sameWindow(infer, c.read)) out.infer = infer;
  return out;
}

/** Chips published by an earlier coordinator (positions < publishedBefore) and not yet done: still queued. */
export function stillQueued(layout: SceneLayout, publishedBefore: number, isDone: (i: number) => boolean): number {
  let n = 0;
  for (let p = 0; p < publishedBefore; p++) if (!isDone(chipAtPosition(layout, p))) n++;
  return n;
}

export interface DispatchPlan {
  runKey: string;
  source: SceneSource;
  scene: SceneReader;
  layout: SceneLayout;
  /** The whole scene's pixels in in-memory mode (jobs then carry their pixels). */
  wholeScene: Uint16Array | null;
  params: WorkflowParams;
  withProbabilities: boolean;
  /** The models' margin around each write window (see planDomain), or null: whole chips. */
  margin: number | null;
}

export interface DispatchOptions {
  /** Per-scene gate first, then any shared ones; a group takes its chips from each. */
  gates: FlowGate[];
  inlinePixels: boolean;
  chipsPerJob: number;
  /** Publication position to start from (resume). */
  from: number;
  isDone: (chipIndex: number) => boolean;
  /** Checked before and after each wait for a slot: a failed scene stops publishing. */
  stopped: () => boolean;
  onPublished: (chipIndex: number) => void;
}

/** Publishes every chip not yet done, from position `from`, recording progress after each job. */
export async function dispatchJobs(plan: DispatchPlan, transport: CoordinatorTransport, o: DispatchOptions): Promise<void> {
  const { layout, params, wholeScene } = plan;
  const { width, height } = plan.scene.geo;
  const base: Omit<TileJob, 'chips'> = {
    type: 'tile-job',
    v: 1,
    runKey: plan.runKey,
    source: plan.source,
    models: { cloud: params.cloud_model, shadow: params.shadow_model },
    thresholds: { cloud: params.cloud_thr, shadow: params.shadow_thr },
    harmonize: params.harmonize,
    withProbabilities: plan.withProbabilities,
  };
  // Jobs of neighbouring chips: the worker reads their union window once and batches them.
  // Inline pixels must fit one message: one chip per job.
  const inline = o.inlinePixels || wholeScene !== null;
  const perJob = inline ? 1 : Math.max(1, Math.min(o.chipsPerJob, o.gates[0].limit, MAX_CHIPS_PER_JOB));
  // Small scenes keep most of their chips grouped.
  const tail = Math.min(TAIL_CHIPS, Math.floor(layout.count / 4));
  let position = o.from;
  let unrecorded = 0;
  while (position < layout.count && !o.stopped()) {
    const group = nextGroup(layout, o.isDone, position, perJob, tail);
    position = group.next;
    if (group.chips.length === 0) continue;
    for (const g of o.gates) await g.acquire(group.chips.length);
    if (o.stopped()) break;
    const job: TileJob = { ...base, chips: group.chips.map((c) => chipWindow(c, plan.margin)) };
    if (inline) {
      const union = unionWindow(job.chips);
      job.pixels = wholeScene ? cutWindow(wholeScene, width, height, union) : await plan.scene.readWindow(union);
    }
    // The lane keeps a worker on the same columns of the scene (docs/performance.md, affinity).
    await transport.submit(job, laneOf(layout.cols.length, group.chips.map((c) => c.col)));
    for (const c of group.chips) o.onPublished(c.index);
    // After the publish, so that a crash re-publishes jobs, never skips one; every few jobs (a
    // state write is a request and a stored message of its own): at most that many again.
    if (++unrecorded >= STATE_EVERY_JOBS) {
      await transport.putState(plan.runKey, { publishedUpTo: position, chips: layout.count });
      unrecorded = 0;
    }
  }
  if (unrecorded > 0) await transport.putState(plan.runKey, { publishedUpTo: position, chips: layout.count });
}

/**
 * Jobs published between two writes of the run state: what a restarted coordinator publishes
 * again at most (their chips are done twice, and the second result is ignored).
 */
export const STATE_EVERY_JOBS = 8;
