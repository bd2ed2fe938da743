/**
 * Small-component removal and small-hole filling with 8-connectivity (skimage
 * `remove_small_objects` then `remove_small_holes`, both with `< minArea`), labelled over runs
 * of a bit-packed mask with union-find: the work grows with the number of runs, not pixels.
 */
import { assertMaskShape, lastWordMask, packMask, unpackMask, type PackedMask } from '../../shared/packed-mask.ts';

/** Maximal horizontal runs [start, end) of one value, row by row. */
interface Runs {
  count: number;
  /** Runs of row y are indices [rowFirst[y], rowFirst[y + 1]). */
  rowFirst: Int32Array;
  start: Int32Array;
  end: Int32Array;
}

/** Index of the lowest set bit of a nonzero word. */
function lowestBit(w: number): number {
  return 31 - Math.clz32(w & -w);
}

/** Runs of 1 bits (or of 0 bits inside the image when `zeros`), found a word at a time. */
function findRuns(p: PackedMask, zeros: boolean): Runs {
  const { width, height, stride, words } = p;
  const flip = zeros ? -1 : 0;
  const tail = lastWordMask(width);
  let start = new Int32Array(1 << 16);
  let end = new Int32Array(1 << 16);
  let count = 0;
  const rowFirst = new Int32Array(height + 1);
  const push = (s: number, e: number): void => {
    if (count === start.length) {
      const grownStart = new Int32Array(count * 2);
      grownStart.set(start);
      start = grownStart;
      const grownEnd = new Int32Array(count * 2);
      grownEnd.set(end);
      end = grownEnd;
    }
    start[count] = s;
    end[count] = e;
    count++;
  };
  for (let y = 0; y < height; y++) {
    rowFirst[y] = count;
    const row = y * stride;
    let open = -1;
    for (let k = 0; k < stride; k++) {
      let w = words[row + k] ^ flip;
      if (k === stride - 1) w &= tail;
      const base = k << 5;
      if (open >= 0) {
        if (w === -1) continue;
        const z = lowestBit(~w);
        push(open, base + z);
        open = -1;
        w &= -1 << z;
      }
      while (w !== 0) {
        const s = lowestBit(w);
        const rest = ~w & (-1 << s);
        if (rest === 0) {
          open = base + s;
          break;
        }
        const e = lowestBit(rest);
        push(base + s, base + e);
        w &= -1 << e;
      }
    }
    if (open >= 0) push(open, width);
  }
  rowFirst[height] = count;
  return { count, rowFirst, start, end };
}

/** Root of `i`, halving the path on the way. Roots are the smallest index of their set. */
function findRoot(parent: Int32Array, i: number): number {
  while (parent[i] !== i) {
    const g = parent[parent[i]];
    parent[i] = g;
    i = g;
  }
  return i;
}

/**
 * Component label (its smallest run index) of every run. 8-connectivity: runs in adjacent rows
 * touch when they overlap after widening one of them by a pixel on each side.
 */
function labelRuns(runs: Runs, height: number): Int32Array {
  const { rowFirst, start, end } = runs;
  const parent = new Int32Array(runs.count);
  for (let i = 0; i < runs.count; i++) parent[i] = i;
  for (let y = 1; y < height; y++) {
    let p = rowFirst[y - 1];
    const prevEnd = rowFirst[y];
    for (let i = rowFirst[y]; i < rowFirst[y + 1]; i++) {
      const s = start[i];
      const e = end[i];
      while (p < prevEnd && end[p] < s) p++;
      for (let q = p; q < prevEnd && start[q] <= e; q++) {
        const a = findRoot(parent, i);
        const b = findRoot(parent, q);
        if (a < b) parent[b] = a;
        else if (b < a) parent[a] = b;
      }
    }
  }
  // Parents always point to smaller indices, so one ascending pass flattens every path.
  for (let i = 0; i < runs.count; i++) parent[i] = parent[parent[i]];
  return parent;
}

/** Sets (value 1) or clears (value 0) bits [s, e) of the row starting at word `row`. */
function paintRange(words: Int32Array, row: number, s: number, e: number, value: number): void {
  let k = s >>> 5;
  const last = (e - 1) >>> 5;
  for (; k <= last; k++) {
    const lo = k === s >>> 5 ? s & 31 : 0;
    const hi = k === last ? ((e - 1) & 31) + 1 : 32;
    const bits = (hi === 32 ? -1 : (1 << hi) - 1) & (-1 << lo);
    if (value) words[row + k] |= bits;
    else words[row + k] &= ~bits;
  }
}

/**
 * In place: every 8-connected component of 1s (or of 0s when `zeros`) with fewer than
 * `minArea` pixels is flipped to the other value.
 */
function flipSmall(p: PackedMask, minArea: number, zeros: boolean): void {
  const runs = findRuns(p, zeros);
  const label = labelRuns(runs, p.height);
  const { rowFirst, start, end } = runs;
  const area = new Float64Array(runs.count);
  for (let i = 0; i < runs.count; i++) area[label[i]] += end[i] - start[i];
  for (let y = 0; y < p.height; y++) {
    for (let i = rowFirst[y]; i < rowFirst[y + 1]; i++) {
      if (area[label[i]] < minArea) paintRange(p.words, y * p.stride, start[i], end[i], zeros ? 1 : 0);
    }
  }
}

/** Removes small objects then fills small holes, in place on a packed mask. */
export function removeSmallPacked(p: PackedMask, minArea: number): void {
  if (!(minArea > 0)) return;
  flipSmall(p, minArea, false);
  flipSmall(p, minArea, true);
}

/**
 * 8-connected: removes set components with fewer than `minArea` pixels, then fills clear (0)
 * components with fewer than `minArea` pixels, whether or not they touch the border (as
 * skimage's remove_small_holes does). minArea <= 0 returns a copy of the input.
 */
export function removeSmallComponents(mask: Uint8Array, width: number, height: number, minArea: number): Uint8Array {
  assertMaskShape(mask, width, height);
  if (!(minArea > 0)) return mask.slice();
  const packed = packMask(mask, width, height);
  removeSmallPacked(packed, minArea);
  return unpackMask(packed);
}
