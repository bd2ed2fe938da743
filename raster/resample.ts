/**
 * Upsampling a coarse band (20 m, 60 m) onto the 10 m grid by an integer ratio, as pure functions
 * of GLOBAL pixel coordinates: any window gives exactly the pixels of a whole-image read.
 *
 * Bilinear follows GDAL: the source coordinate of target pixel x is sx = (x + 0.5) / r - 0.5;
 * the two neighbours per axis get weights (1 - f) and f; neighbours outside the source image or
 * equal to 0 (nodata) are dropped and the remaining weights renormalised; when all are dropped
 * the result is 0. Values are rounded to nearest.
 */
import { emptyPacked, type PackedMask } from '../shared/packed-mask.ts';
import type { Window } from './types.ts';

/** A window of a source image held in memory: pixel (x + i, y + j) is data[j * width + i]. */
export interface SourceBlock {
  data: ArrayLike<number>;
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Source pixels [lo, hi) bilinear needs for target pixels [t0, t0 + n), clipped to the source. */
export function bilinearSourceRange(t0: number, n: number, ratio: number, srcSize: number): [number, number] {
  const lo = Math.floor((t0 + 0.5) / ratio - 0.5);
  const hi = Math.floor((t0 + n - 1 + 0.5) / ratio - 0.5) + 2;
  return [Math.max(0, lo), Math.min(srcSize, hi)];
}

/** Source pixels [lo, hi) nearest needs for target pixels [t0, t0 + n), clipped to the source. */
export function nearestSourceRange(t0: number, n: number, ratio: number, srcSize: number): [number, number] {
  const lo = nearestSource(t0, ratio);
  const hi = nearestSource(t0 + n - 1, ratio) + 1;
  return [Math.max(0, lo), Math.min(srcSize, hi)];
}

/** Per target position on one axis: block-relative neighbour indexes (-1 = none) and weights. */
interface AxisTaps {
  i0: Int32Array;
  i1: Int32Array;
  w0: Float64Array;
  w1: Float64Array;
}

function axisTaps(t0: number, n: number, ratio: number, srcSize: number, blockStart: number, blockSize: number): AxisTaps {
  const taps: AxisTaps = { i0: new Int32Array(n).fill(-1), i1: new Int32Array(n).fill(-1), w0: new Float64Array(n), w1: new Float64Array(n) };
  const footprint = srcSize * ratio;
  const tap = (k: number, src: number, w: number, i: Int32Array, ws: Float64Array, t: number): void => {
    if (src < 0 || src >= srcSize || w === 0) return;
    const rel = src - blockStart;
    if (rel < 0 || rel >= blockSize) throw new RangeError(`source block misses pixel ${src} needed for target ${t}`);
    i[k] = rel;
    ws[k] = w;
  };
  for (let k = 0; k < n; k++) {
    const t = t0 + k;
    if (t < 0 || t >= footprint) continue; // outside the scene: nodata
    const s = (t + 0.5) / ratio - 0.5;
    const a = Math.floor(s);
    const f = s - a;
    tap(k, a, 1 - f, taps.i0, taps.w0, t);
    tap(k, a + 1, f, taps.i1, taps.w1, t);
  }
  return taps;
}

/**
 * Bilinear upsampling of `block` (a window of a `srcWidth` x `srcHeight` image) by `ratio` onto
 * the target window `target` of the fine grid. Returns target.width * target.height values.
 *
 * Every pixel is computed with the same float64 operations in the same order as the plain
 * definition (taps row by row, left to right, weights wy * wx), so results do not depend on the
 * code path. At ratio 2 all weights are multiples of 1/4, every product and sum is exact, and a
 * pixel with four valid taps is computed in integers: (9a + 3b + 3c + d + 8) >> 4 equals
 * Math.round of the float sum exactly.
 */
export function resampleBilinear(block: SourceBlock, srcWidth: number, srcHeight: number, ratio: number, target: Window, out?: Uint16Array): Uint16Array {
  const { width: tw, height: th } = target;
  const dst = out ?? new Uint16Array(tw * th);
  const cols = axisTaps(target.x, tw, ratio, srcWidth, block.x, block.width);
  const rows = axisTaps(target.y, th, ratio, srcHeight, block.y, block.height);
  if (ratio === 2) resampleRatio2(block, cols, rows, target, dst);
  else resampleGeneric(block, cols, rows, tw, th, dst);
  return dst;
}

/** One target pixel, the plain definition: valid nonzero taps, weights renormalised. */
function pixel(src: Uint16Array, b0: number, b1: number, wy0: number, wy1: number, cx0: number, cx1: number, wx0: number, wx1: number): number {
  let sum = 0;
  let wsum = 0;
  if (b0 >= 0) {
    if (cx0 >= 0) {
      const v = src[b0 + cx0]!;
      if (v !== 0) {
        const w = wy0 * wx0;
        sum += w * v;
        wsum += w;
      }
    }
    if (cx1 >= 0) {
      const v = src[b0 + cx1]!;
      if (v !== 0) {
        const w = wy0 * wx1;
        sum += w * v;
        wsum += w;
      }
    }
  }
  if (b1 >= 0) {
    if (cx0 >= 0) {
      const v = src[b1 + cx0]!;
      if (v !== 0) {
        const w = wy1 * wx0;
        sum += w * v;
        wsum += w;
      }
    }
    if (cx1 >= 0) {
      const v = src[b1 + cx1]!;
      if (v !== 0) {
        const w = wy1 * wx1;
        sum += w * v;
        wsum += w;
      }
    }
  }
  return wsum > 0 ? Math.min(65535, Math.max(1, Math.round(sum / wsum))) : 0;
}

/** The range [lo, hi) of target positions whose two taps both exist (contiguous by construction). */
function fullRange(t: AxisTaps, n: number): [number, number] {
  let lo = 0;
  while (lo < n && (t.i0[lo]! < 0 || t.i1[lo]! < 0)) lo++;
  let hi = lo;
  while (hi < n && t.i0[hi]! >= 0 && t.i1[hi]! >= 0) hi++;
  return [lo, hi];
}

function resampleGeneric(block: SourceBlock, cols: AxisTaps, rows: AxisTaps, tw: number, th: number, dst: Uint16Array): void {
  const src = uint16(block.data);
  const bw = block.width;
  const [lo, hi] = fullRange(cols, tw);
  for (let j = 0; j < th; j++) {
    const r0 = rows.i0[j]!;
    const r1 = rows.i1[j]!;
    const b0 = r0 < 0 ? -1 : r0 * bw;
    const b1 = r1 < 0 ? -1 : r1 * bw;
    const wy0 = rows.w0[j]!;
    const wy1 = rows.w1[j]!;
    const o = j * tw;
    if (b0 < 0 || b1 < 0) {
      plainRange(src, b0, b1, wy0, wy1, cols, 0, tw, dst, o);
      continue;
    }
    plainRange(src, b0, b1, wy0, wy1, cols, 0, lo, dst, o);
    plainRange(src, b0, b1, wy0, wy1, cols, hi, tw, dst, o);
    if (interiorRow(src, b0, b1, wy0, wy1, cols.i0, cols.w0, cols.w1, lo, hi, dst, o)) {
      // Nodata taps (rare): those pixels again by the plain definition.
      const { i0: ci0, i1: ci1, w0: cw0, w1: cw1 } = cols;
      for (let i = lo; i < hi; i++) {
        if (src[b0 + ci0[i]!] === 0 || src[b0 + ci1[i]!] === 0 || src[b1 + ci0[i]!] === 0 || src[b1 + ci1[i]!] === 0) {
          dst[o + i] = pixel(src, b0, b1, wy0, wy1, ci0[i]!, ci1[i]!, cw0[i]!, cw1[i]!);
        }
      }
    }
  }
}

/**
 * Target columns [lo, hi) of one row where all four taps exist (the right column tap is the left
 * one + 1). Consecutive target columns share their taps (`ratio` of them per source column), so
 * taps are loaded once per run; each pixel is the plain definition unrolled, same operations in
 * the same order. Returns true when a tap was 0 (nodata): the caller redoes those pixels.
 */
function interiorRow(src: Uint16Array, b0: number, b1: number, wy0: number, wy1: number, ci0: Int32Array, cw0: Float64Array, cw1: Float64Array, lo: number, hi: number, dst: Uint16Array, o: number): boolean {
  let zero = false;
  let i = lo;
  while (i < hi) {
    const c0 = ci0[i]!;
    const a = src[b0 + c0]!;
    const b = src[b0 + c0 + 1]!;
    const c = src[b1 + c0]!;
    const d = src[b1 + c0 + 1]!;
    if (a === 0 || b === 0 || c === 0 || d === 0) zero = true;
    for (; i < hi && ci0[i] === c0; i++) {
      const wx0 = cw0[i]!;
      const wx1 = cw1[i]!;
      const w00 = wy0 * wx0;
      const w01 = wy0 * wx1;
      const w10 = wy1 * wx0;
      const w11 = wy1 * wx1;
      // floor(x + 0.5) is Math.round(x) for x >= 0.5 (x + 0.5 is exact there), and below the clamp
      // gives 1 either way; Math.round compiles to a data-dependent branch, floor does not.
      const v = Math.floor((w00 * a + w01 * b + w10 * c + w11 * d) / (w00 + w01 + w10 + w11) + 0.5);
      dst[o + i] = v < 1 ? 1 : v > 65535 ? 65535 : v;
    }
  }
  return zero;
}

/** Target columns [from, to) of one row by the plain definition. */
function plainRange(src: Uint16Array, b0: number, b1: number, wy0: number, wy1: number, cols: AxisTaps, from: number, to: number, dst: Uint16Array, o: number): void {
  for (let i = from; i < to; i++) dst[o + i] = pixel(src, b0, b1, wy0, wy1, cols.i0[i]!, cols.i1[i]!, cols.w0[i]!, cols.w1[i]!);
}

/**
 * Ratio 2, where all weights are 1/4 or 3/4. Target column t = 2m + 1 takes source columns
 * (m, m + 1) with weights (3, 1) / 4 and t = 2m + 2 the same pair with (1, 3) / 4; rows alike.
 * Each source row is interpolated horizontally once, two target columns per source pair, in
 * integers (x4; -1 where a tap is missing or nodata), and each pair of target rows sharing two
 * source rows is computed in one pass. Pixels marked -1 take the plain definition.
 * The loops are top-level functions over typed arrays (no closures): V8 keeps them tight.
 */
function resampleRatio2(block: SourceBlock, cols: AxisTaps, rows: AxisTaps, target: Window, dst: Uint16Array): void {
  const src = uint16(block.data);
  const bw = block.width;
  const { width: tw, height: th } = target;
  const [lo, hi] = fullRange(cols, tw);
  const firstOdd = (target.x + lo) & 1;
  // Horizontal values of the two most recent source rows.
  const held = [new Int32Array(tw), new Int32Array(tw)];
  const heldRow = [-1, -1];
  const horizontal = (r: number): Int32Array => {
    if (heldRow[0] === r) return held[0]!;
    if (heldRow[1] === r) return held[1]!;
    const slot = heldRow[0] === r - 1 ? 1 : 0; // rows only move down: keep r - 1
    heldRow[slot] = r;
    horizontalRow2(src, r * bw, cols.i0, lo, hi, firstOdd, held[slot]!);
    return held[slot]!;
  };
  for (let j = 0; j < th; ) {
    const r0 = rows.i0[j]!;
    const r1 = rows.i1[j]!;
    if (r0 < 0 || r1 < 0) {
      plainRange(src, r0 < 0 ? -1 : r0 * bw, r1 < 0 ? -1 : r1 * bw, rows.w0[j]!, rows.w1[j]!, cols, 0, tw, dst, j * tw);
      j++;
      continue;
    }
    const h0 = horizontal(r0);
    const h1 = horizontal(r1);
    const odd = ((target.y + j) & 1) === 1;
    // Rows j (weights 3, 1) and j + 1 (1, 3) from the same two source rows: one pass.
    const both = odd && j + 1 < th && rows.i0[j + 1] === r0 && rows.i1[j + 1] === r1;
    const missing = both ? blendRowPair2(h0, h1, dst, j * tw, lo, hi, tw) : blendRow2(h0, h1, odd ? 3 : 1, odd ? 1 : 3, dst, j * tw, lo, hi);
    const n = both ? 2 : 1;
    for (let k = j; k < j + n; k++) {
      // Columns with a tap outside the source (at its edges): the plain definition, always.
      const b0 = rows.i0[k]! * bw;
      const b1 = rows.i1[k]! * bw;
      plainRange(src, b0, b1, rows.w0[k]!, rows.w1[k]!, cols, 0, lo, dst, k * tw);
      plainRange(src, b0, b1, rows.w0[k]!, rows.w1[k]!, cols, hi, tw, dst, k * tw);
      if (missing < 0) fixups2(src, bw, rows, k, cols, h0, h1, dst, lo, hi, tw);
    }
    j += n;
  }
}

/** Typed source samples (uint16 files give them already). */
function uint16(data: ArrayLike<number>): Uint16Array {
  return data instanceof Uint16Array ? data : Uint16Array.from(data);
}

/** One source row's horizontal values x4 for target columns [lo, hi), the interior (-1: a nodata tap). */
function horizontalRow2(src: Uint16Array, base: number, ci0: Int32Array, lo: number, hi: number, firstOdd: number, h: Int32Array): void {
  let i = lo;
  if (i < hi && firstOdd === 0) {
    // An even target column alone: weights (1, 3).
    const c = base + ci0[i]!;
    const a = src[c]!;
    const b = src[c + 1]!;
    h[i++] = a === 0 || b === 0 ? -1 : a + 3 * b;
  }
  for (let c = base + (i < hi ? ci0[i]! : 0); i + 1 < hi; i += 2, c++) {
    const a = src[c]!;
    const b = src[c + 1]!;
    if (a === 0 || b === 0) {
      h[i] = -1;
      h[i + 1] = -1;
    } else {
      h[i] = 3 * a + b;
      h[i + 1] = a + 3 * b;
    }
  }
  if (i < hi) {
    // An odd target column alone: weights (3, 1).
    const c = base + ci0[i]!;
    const a = src[c]!;
    const b = src[c + 1]!;
    h[i] = a === 0 || b === 0 ? -1 : 3 * a + b;
  }
}

/** Target rows o and o + tw, columns [lo, hi), from horizontal rows h0, h1 with weights (3, 1) and (1, 3); negative if a value is missing. */
function blendRowPair2(h0: Int32Array, h1: Int32Array, dst: Uint16Array, o: number, lo: number, hi: number, tw: number): number {
  let missing = 0;
  const o2 = o + tw;
  for (let i = lo; i < hi; i++) {
    const a = h0[i]!;
    const b = h1[i]!;
    dst[o + i] = (3 * a + b + 8) >> 4;
    dst[o2 + i] = (a + 3 * b + 8) >> 4;
    missing |= a | b;
  }
  return missing;
}

/** Target row o, columns [lo, hi), from horizontal rows h0, h1 with weights (k0, k1); negative if a value is missing. */
function blendRow2(h0: Int32Array, h1: Int32Array, k0: number, k1: number, dst: Uint16Array, o: number, lo: number, hi: number): number {
  let missing = 0;
  for (let i = lo; i < hi; i++) {
    const a = h0[i]!;
    const b = h1[i]!;
    dst[o + i] = (k0 * a + k1 * b + 8) >> 4;
    missing |= a | b;
  }
  return missing;
}

/** Target row j's pixels in columns [lo, hi) with a nodata tap, by the plain definition. */
function fixups2(src: Uint16Array, bw: number, rows: AxisTaps, j: number, cols: AxisTaps, h0: Int32Array, h1: Int32Array, dst: Uint16Array, lo: number, hi: number, tw: number): void {
  const b0 = rows.i0[j]! * bw;
  const b1 = rows.i1[j]! * bw;
  const o = j * tw;
  for (let i = lo; i < hi; i++) {
    if (h0[i]! < 0 || h1[i]! < 0) dst[o + i] = pixel(src, b0, b1, rows.w0[j]!, rows.w1[j]!, cols.i0[i]!, cols.i1[i]!, cols.w0[i]!, cols.w1[i]!);
  }
}

/** The source pixel nearest-neighbour takes for target pixel t (global coordinates). */
function nearestSource(t: number, ratio: number): number {
  return Math.floor((t + 0.5) / ratio);
}

/** For target columns x0 .. x0 + width - 1: their source column relative to blockX, or -1 outside the source. */
function nearestColumns(x0: number, width: number, ratio: number, srcWidth: number, blockX: number): Int32Array {
  const cols = new Int32Array(width);
  for (let i = 0; i < width; i++) {
    const s = nearestSource(x0 + i, ratio);
    cols[i] = x0 + i >= 0 && s < srcWidth ? s - blockX : -1;
  }
  return cols;
}

/** Nearest-neighbour upsampling (for class bands such as SCL): source pixel floor((x + 0.5) / r). */
export function resampleNearest<T extends Uint8Array | Uint16Array>(block: SourceBlock, srcWidth: number, srcHeight: number, ratio: number, target: Window, out: T): T {
  const { width: tw, height: th } = target;
  const colIdx = nearestColumns(target.x, tw, ratio, srcWidth, block.x);
  let prevSource = -1;
  for (let j = 0; j < th; j++) {
    const t = target.y + j;
    const s = nearestSource(t, ratio);
    const o = j * tw;
    if (t < 0 || s >= srcHeight) {
      out.fill(0, o, o + tw);
      prevSource = -1;
      continue;
    }
    // Consecutive target rows from the same source row are copies of the previous one.
    if (s === prevSource) {
      out.copyWithin(o, o - tw, o);
      continue;
    }
    prevSource = s;
    const base = (s - block.y) * block.width;
    for (let i = 0; i < tw; i++) {
      const c = colIdx[i]!;
      out[o + i] = c >= 0 ? block.data[base + c]! : 0;
    }
  }
  return out;
}

/**
 * resampleNearest of a whole image of 0/1 values onto the whole width x height target, straight into bits
 * (shared/packed-mask.ts): the same source pixel for every target pixel, without the
 * target-sized byte raster in between. Product masks (SCL at 20 m, MSK_CLASSI at 60 m) go
 * this way; on a full tile it is a fraction of the byte path's cost. With `rows`, only target rows
 * [from, to) are written, into `into` (a mask made in steps).
 */
export function resampleNearestPacked(src: Uint8Array, srcWidth: number, srcHeight: number, ratio: number, width: number, height: number, rows?: { from: number; to: number; into: PackedMask }): PackedMask {
  const p = rows?.into ?? emptyPacked(width, height);
  const { stride, words } = p;
  const colIdx = nearestColumns(0, width, ratio, srcWidth, 0);
  let prevSource = -1;
  for (let y = rows?.from ?? 0; y < (rows?.to ?? height); y++) {
    const s = nearestSource(y, ratio);
    const o = y * stride;
    if (s >= srcHeight) {
      prevSource = -1;
      continue;
    }
    if (s === prevSource) {
      words.copyWithin(o, o - stride, o);
      continue;
    }
    prevSource = s;
    const base = s * srcWidth;
    if (src.subarray(base, base + srcWidth).indexOf(1) < 0) continue; // a clear row: its words stay 0
    for (let k = 0; k < stride; k++) {
      const x0 = k << 5;
      const n = Math.min(32, width - x0);
      let w = 0;
      for (let b = 0; b < n; b++) {
        const c = colIdx[x0 + b];
        if (c >= 0 && src[base + c] !== 0) w |= 1 << b;
      }
      words[o + k] = w;
    }
  }
  return p;
}
