import { bilinearSourceRange } from '../raster/resample.ts';
import { sceneLayout, chipAt } from '../shared/tiling.ts';
import { nextGroup } from '../coordinator/dispatch.ts';
const SIZE = Number(process.argv[2] ?? 4392);
const W = Number(process.argv[3] ?? 2);
const L = Number(process.argv[4] ?? 8);
const policy = process.argv[5] ?? 'lanes';
const TILE = 1024;
const GROUPS = [{ ratio: 1, bands: 4 }, { ratio: 2, bands: 6 }, { ratio: 6, bands: 2 }];
const layout = sceneLayout(SIZE, SIZE);
const cols = layout.cols.length;
type J = { chips: number[]; lane: number; x: number; y: number; w: number; h: number };
function tilesOf(j: J): string[] {
  const keys: string[] = [];
  GROUPS.forEach(({ ratio, bands }, g) => {
    const src = Math.ceil(SIZE / ratio);
    const [x0, x1] = bilinearSourceRange(j.x, j.w, ratio, src);
    const [y0, y1] = bilinearSourceRange(j.y, j.h, ratio, src);
    for (let ty = Math.floor(y0 / TILE); ty * TILE < y1; ty++) for (let tx = Math.floor(x0 / TILE); tx * TILE < x1; tx++) for (let b = 0; b < bands; b++) keys.push(`${g}:${b}:${tx}:${ty}`);
  });
  return keys;
}
const all: J[] = [];
let p = 0;
const tail = Math.min(16, Math.floor(layout.count / 4));
while (p < layout.count) {
  const g = nextGroup(layout, () => false, p, Number(process.env.PER ?? 4), tail);
  p = g.next;
  const cs = g.chips.map((c) => c.col);
  const centre = (Math.min(...cs) + Math.max(...cs)) / 2;
  const lane = Math.min(L - 1, Math.floor(((centre + 0.5) * L) / cols));
  const x = Math.min(...g.chips.map((c) => c.read.x));
  const x1 = Math.max(...g.chips.map((c) => c.read.x + c.read.width));
  all.push({ chips: g.chips.map((c) => c.index), lane, x, y: g.chips[0].read.y, w: x1 - x, h: 512 });
}
const own = (w: number, lane: number) => Math.floor((lane * W) / L) === w;
// event sim
const IN_FLIGHT = 32, PER_WORKER = 2;
let published = 0, inflight = 0, t = 0;
const queue: J[] = [];
const held: { job: J; end: number }[][] = Array.from({ length: W }, () => []);
const busyUntil = Array(W).fill(0);
const seen = Array.from({ length: W }, () => new Set<string>());
let steals = 0;
const idleAt: (number | null)[] = Array(W).fill(null);
function publish() { while (published < all.length && inflight + all[published].chips.length <= IN_FLIGHT) { queue.push(all[published]); inflight += all[published].chips.length; published++; } }
function pull(w: number) {
  while (held[w].length < PER_WORKER) {
    let i = policy === 'shared' ? (queue.length ? 0 : -1) : queue.findIndex((j) => own(w, j.lane));
    if (i < 0 && policy !== 'shared' && policy !== 'nosteal' && queue.length && (process.env.IDLE ? held[w].length === 0 : true) && t - (idleAt[w] ?? t) >= Number(process.env.PATIENCE ?? 0)) {
      const mine = Array.from({ length: L }, (_, l) => l).filter((l) => own(w, l));
      const dist = (j: J) => Math.min(...mine.map((l) => Math.abs(l - j.lane)));
      i = policy === 'near' ? queue.reduce((b, j, k) => (dist(j) < dist(queue[b]) ? k : b), 0) : 0; steals++; }
    if (i < 0) { if (held[w].length === 0) idleAt[w] ??= t; return; }
    idleAt[w] = null;
    const [job] = queue.splice(i, 1);
    const start = Math.max(t, busyUntil[w]);
    busyUntil[w] = start + job.chips.length * (w === 0 ? Number(process.env.SLOW ?? 1) : 1);
    held[w].push({ job, end: busyUntil[w] });
    tilesOf(job).forEach((k) => seen[w].add(k));
  }
}
publish();
let done = 0;
while (done < all.length) {
  for (let w = 0; w < W; w++) pull(w);
  // next completion
  let best = -1, bw = -1;
  for (let w = 0; w < W; w++) for (const h of held[w]) if (best < 0 || h.end < best) { best = h.end; bw = w; }
  const wakes = idleAt.filter((x): x is number => x !== null).map((x) => x + Number(process.env.PATIENCE ?? 0)).filter((x) => x > t);
  const wake = wakes.length ? Math.min(...wakes) : Infinity;
  if (bw < 0 && wake === Infinity) { console.log('stuck'); break; }
  if (wake < (bw < 0 ? Infinity : best)) { t = wake; continue; }
  t = best;
  const k = held[bw].findIndex((h) => h.end === best);
  const [h] = held[bw].splice(k, 1);
  inflight -= h.job.chips.length; done++;
  publish();
}
const tiles = new Set(all.flatMap(tilesOf)).size;
const dec = seen.reduce((a, s) => a + s.size, 0);
console.log(`size ${SIZE} workers ${W} lanes ${L} ${policy}: jobs ${all.length} tiles ${tiles} decodes ${dec} (${(dec / tiles).toFixed(2)}) makespan ${t} (ideal ${layout.count / W}) steals ${steals}`);
