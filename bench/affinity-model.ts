/**
 * `npx tsx bench/affinity-model.ts [--workers 1,2,10,50] [--stripe-rows 3]`
 *
 * A model, not a measurement: how many source tiles the workers of a full 10980 tile decode
 * together when jobs (up to 4 chips of a row) are spread over N workers as the shared consumer
 * does (in publication order, one after the other), against stripes of S chip rows claimed by
 * workers (a worker claims the stripe after its last one).
 * Each worker is given an unbounded tile cache, so the counts are lower bounds (a 256 MiB cache
 * decodes about 1.15 times per tile for one worker, measured).
 */
import { parseArgs } from 'node:util';
import { bilinearSourceRange } from '../raster/resample.ts';
import { CHIP_SIZE, sceneLayout, type SceneLayout } from '../shared/tiling.ts';

const TILE = 1024;
const SIZE = 10980;
/** Bands read per resolution ratio: 4 at 10 m, 6 at 20 m, 2 at 60 m. */
const GROUPS = [
  { ratio: 1, bands: 4 },
  { ratio: 2, bands: 6 },
  { ratio: 6, bands: 2 },
];

interface Job {
  row: number;
  x: number;
  y: number;
  width: number;
  height: number;
}

function jobs(layout: SceneLayout, perJob = 4): Job[] {
  const out: Job[] = [];
  for (let r = 0; r < layout.rows.length; r++) {
    for (let c = 0; c < layout.cols.length; c += perJob) {
      const first = layout.cols[c]!;
      const last = layout.cols[Math.min(c + perJob, layout.cols.length) - 1]!;
      const row = layout.rows[r]!;
      out.push({ row: r, x: first.readStart, y: row.readStart, width: last.readStart + CHIP_SIZE - first.readStart, height: CHIP_SIZE });
    }
  }
  return out;
}

/** Keys of the source tiles a job's window needs, all bands. */
function tilesOf(j: Job): string[] {
  const keys: string[] = [];
  GROUPS.forEach(({ ratio, bands }, g) => {
    const src = Math.ceil(SIZE / ratio);
    const [x0, x1] = bilinearSourceRange(j.x, j.width, ratio, src);
    const [y0, y1] = bilinearSourceRange(j.y, j.height, ratio, src);
    for (let ty = Math.floor(y0 / TILE); ty * TILE < y1; ty++) {
      for (let tx = Math.floor(x0 / TILE); tx * TILE < x1; tx++) for (let b = 0; b < bands; b++) keys.push(`${g}:${b}:${tx}:${ty}`);
    }
  });
  return keys;
}

function decodes(assign: (j: Job, i: number) => number, all: Job[], workers: number): number {
  const seen = Array.from({ length: workers }, () => new Set<string>());
  all.forEach((j, i) => tilesOf(j).forEach((k) => seen[assign(j, i)]!.add(k)));
  return seen.reduce((a, s) => a + s.size, 0);
}

function main(): void {
  const { values } = parseArgs({ options: { workers: { type: 'string', default: '1,2,10,50' }, 'stripe-rows': { type: 'string', default: '3' } } });
  const layout = sceneLayout(SIZE, SIZE);
  const all = jobs(layout);
  const S = Number(values['stripe-rows']);
  const stripes = Math.ceil(layout.rows.length / S);
  const tiles = new Set(all.flatMap(tilesOf)).size;
  console.log(`full tile: ${layout.count} chips, ${all.length} jobs, ${tiles} source tiles; stripes of ${S} chip rows: ${stripes}`);
  console.log('workers | shared consumer (decodes, per tile) | stripes (decodes, per tile)');
  for (const n of values.workers.split(',').map(Number)) {
    const shared = decodes((_, i) => i % n, all, n);
    // Fewer workers than stripes: each claims the stripe after its last one, so a worker holds a
    // run of neighbouring stripes. More: each stripe's jobs alternate between its k workers.
    const k = Math.max(1, Math.floor(n / stripes));
    const striped = decodes((j, i) => {
      const stripe = Math.floor(j.row / S);
      return n <= stripes ? Math.floor((stripe * n) / stripes) : stripe * k + (i % k);
    }, all, n);
    console.log(`${n} | ${shared}, ${(shared / tiles).toFixed(2)} | ${striped}, ${(striped / tiles).toFixed(2)}`);
  }
}

main();
