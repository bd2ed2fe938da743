/**
 * `npx tsx bench/affinity-model.ts [--size 10980] [--workers 1,2,3,4,8] [--chips-per-job 4] [--in-flight 32] [--slow 1]`
 *
 * A model, not a measurement: how many source tiles N worker processes decode together on one
 * scene, with the coordinator's real publication order (rows back and forth, jobs of up to
 * `--chips-per-job` chips, the last chips one per job) and flow control (at most `--in-flight`
 * chips published and not done), each worker holding 2 jobs (one thread) and running them one
 * after the other at one time unit a chip (`--slow f`: worker 0 takes f units). Two ways to hand
 * out jobs:
 * - shared: one consumer, the oldest job to whichever worker asks (before lanes);
 * - lanes: the coordinator's lanes (shared/lanes.ts), owned as ownedLanes says; a worker with
 *   nothing at all takes the oldest job of the lane nearest to its own (pickLane).
 * Each worker is given an unbounded tile cache, so the counts are lower bounds. With one shared
 * consumer the model gives 302 decodes on the 144-chip bench scene: what two workers measured.
 */
import { parseArgs } from 'node:util';
import { nextGroup } from '../coordinator/dispatch.ts';
import { bilinearSourceRange } from '../raster/resample.ts';
import { laneOf, ownedLanes, pickLane } from '../shared/lanes.ts';
import { JOB_LANES } from '../shared/subjects.ts';
import { sceneLayout } from '../shared/tiling.ts';

const TILE = 1024;
/** Bands read per resolution ratio: 4 at 10 m, 6 at 20 m, 2 at 60 m. */
const GROUPS = [
  { ratio: 1, bands: 4 },
  { ratio: 2, bands: 6 },
  { ratio: 6, bands: 2 },
];

interface Job {
  chips: number;
  lane: number;
  tiles: string[];
}

/** Keys of the source tiles a window needs, all bands. */
function tilesOf(size: number, x: number, y: number, width: number, height: number): string[] {
  const keys: string[] = [];
  GROUPS.forEach(({ ratio, bands }, g) => {
    const src = Math.ceil(size / ratio);
    const [x0, x1] = bilinearSourceRange(x, width, ratio, src);
    const [y0, y1] = bilinearSourceRange(y, height, ratio, src);
    for (let ty = Math.floor(y0 / TILE); ty * TILE < y1; ty++) {
      for (let tx = Math.floor(x0 / TILE); tx * TILE < x1; tx++) for (let b = 0; b < bands; b++) keys.push(`${g}:${b}:${tx}:${ty}`);
    }
  });
  return keys;
}

/** The scene's jobs in publication order, as coordinator/dispatch.ts makes them. */
function jobs(size: number, perJob: number): Job[] {
  const layout = sceneLayout(size, size);
  const tail = Math.min(16, Math.floor(layout.count / 4));
  const out: Job[] = [];
  for (let p = 0; p < layout.count; ) {
    const { chips, next } = nextGroup(layout, () => false, p, perJob, tail);
    p = next;
    const x0 = Math.min(...chips.map((c) => c.read.x));
    const x1 = Math.max(...chips.map((c) => c.read.x + c.read.width));
    const lane = laneOf(layout.cols.length, chips.map((c) => c.col));
    out.push({ chips: chips.length, lane, tiles: tilesOf(size, x0, chips[0]!.read.y, x1 - x0, chips[0]!.read.height) });
  }
  return out;
}

interface Outcome {
  decodes: number[];
  makespan: number;
  helped: number;
}

/** Runs the scene's jobs through `workers` workers; `lanes` false: one shared consumer. */
function simulate(all: Job[], workers: number, lanes: boolean, inFlight: number, slow: number): Outcome {
  const queue: Job[] = [];
  const held: { job: Job; end: number }[][] = Array.from({ length: workers }, () => []);
  const busyUntil = new Array<number>(workers).fill(0);
  const seen = Array.from({ length: workers }, () => new Set<string>());
  const owned = Array.from({ length: workers }, (_, w) => ownedLanes(w, workers));
  let published = 0;
  let open = 0;
  let t = 0;
  let helped = 0;
  const publish = (): void => {
    while (published < all.length && open + all[published]!.chips <= inFlight) {
      queue.push(all[published]!);
      open += all[published++]!.chips;
    }
  };
  const take = (w: number): void => {
    while (held[w]!.length < 2 && queue.length > 0) {
      let i = 0;
      if (lanes) {
        const pending = new Array<number>(JOB_LANES).fill(0);
        for (const j of queue) pending[j.lane]!++;
        const lane = pickLane(owned[w]!, pending, held[w]!.length === 0);
        if (lane === null) return;
        if (!owned[w]!.includes(lane)) helped++;
        i = queue.findIndex((j) => j.lane === lane);
      }
      const [job] = queue.splice(i, 1);
      busyUntil[w] = Math.max(t, busyUntil[w]!) + job!.chips * (w === 0 ? slow : 1);
      held[w]!.push({ job: job!, end: busyUntil[w]! });
      for (const k of job!.tiles) seen[w]!.add(k);
    }
  };
  publish();
  for (let done = 0; done < all.length; done++) {
    for (let w = 0; w < workers; w++) take(w);
    let next: { w: number; k: number } | null = null;
    held.forEach((hs, w) => hs.forEach((h, k) => {
      if (!next || h.end < held[next.w]![next.k]!.end) next = { w, k };
    }));
    const { w, k } = next!;
    const [h] = held[w]!.splice(k, 1);
    t = h!.end;
    open -= h!.job.chips;
    publish();
  }
  return { decodes: seen.map((s) => s.size), makespan: t, helped };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '10980' },
      workers: { type: 'string', default: '1,2,3,4,8' },
      'chips-per-job': { type: 'string', default: '4' },
      'in-flight': { type: 'string', default: '32' },
      slow: { type: 'string', default: '1' },
    },
  });
  const size = Number(values.size);
  const all = jobs(size, Number(values['chips-per-job']));
  const tiles = new Set(all.flatMap((j) => j.tiles)).size;
  const chips = all.reduce((a, j) => a + j.chips, 0);
  console.log(`scene ${size}x${size}: ${chips} chips, ${all.length} jobs, ${tiles} source tiles; ${values['in-flight']} chips in flight`);
  console.log('workers | shared: decodes (per tile), time | lanes: decodes (per tile), time, jobs from other lanes');
  for (const n of values.workers.split(',').map(Number)) {
    const row = [false, true].map((lanes) => simulate(all, n, lanes, Number(values['in-flight']), Number(values.slow)));
    const cell = (o: Outcome): string => {
      const sum = o.decodes.reduce((a, b) => a + b, 0);
      return `${sum} (${(sum / tiles).toFixed(2)}), ${o.makespan.toFixed(0)}`;
    };
    console.log(`${n} | ${cell(row[0]!)} | ${cell(row[1]!)}, ${row[1]!.helped}`);
  }
  console.log(`time: chip-units (ideal ${chips} / workers)`);
}

main();
