/**
 * Internal overviews for Cloud-Optimized GeoTIFFs, as GDAL's COG driver lays them out: each
 * level half the size of the one above (rounded up), until the smallest fits in one tile.
 *
 * - `max`: a pixel of a level is the largest of the (up to) 2x2 pixels under it in the level
 *   above, so a mask's overview shows cloud wherever any full-resolution pixel is cloud
 *   (max is associative: computing level k from level k-1 equals taking the max over its whole
 *   2^k x 2^k block of the full image).
 * - `nearest`: the full-resolution pixel under the overview pixel's centre,
 *   floor((i + 0.5) * W / Wk), taken straight from the full image (class codes stay real codes).
 * - `average`: the mean of the (up to) 2x2 pixels of the level above (probabilities).
 *
 * Levels are kept in memory: together at most a third of the full raster's size.
 */
import { emptyPacked, type PackedMask } from '../shared/packed-mask.ts';

export type OverviewResampling = 'nearest' | 'max' | 'average';

export type Pixels = Uint8Array | Uint16Array | Float32Array;

/** One image of a pyramid: band-major pixels [bands][height][width], or one band of 0/1 as bits. */
export interface Level {
  width: number;
  height: number;
  data: Pixels | PackedMask;
}

export const isPacked = (d: Pixels | PackedMask): d is PackedMask => 'words' in d;

type PixelLevel = Level & { data: Pixels };

/** Sizes of the overview levels of a width x height image with `tile`-pixel tiles (largest first). */
export function overviewSizes(width: number, height: number, tile: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let w = width;
  let h = height;
  while (w > tile || h > tile) {
    w = Math.ceil(w / 2);
    h = Math.ceil(h / 2);
    out.push([w, h]);
  }
  return out;
}

/** The overview levels of `full` (largest first); none when it already fits one tile. */
export function buildOverviews(full: Level, bands: number, tile: number, resampling: OverviewResampling): Level[] {
  if (isPacked(full.data)) return packedOverviews(full.data, tile, resampling);
  const levels: Level[] = [];
  const source = full as PixelLevel;
  let above = source;
  for (const [w, h] of overviewSizes(full.width, full.height, tile)) {
    const Ctor = source.data.constructor as new (n: number) => Pixels;
    const data = new Ctor(w * h * bands);
    for (let b = 0; b < bands; b++) {
      if (resampling === 'nearest') nearestBand(source, data, w, h, b);
      else halveBand(above, data, w, h, b, resampling === 'max');
    }
    above = { width: w, height: h, data };
    levels.push(above);
  }
  return levels;
}

/** Overviews of a 0/1 band held as bits: the max of 0/1 pixels is their OR, taken a word at a time. */
function packedOverviews(full: PackedMask, tile: number, resampling: OverviewResampling): Level[] {
  if (resampling !== 'max') throw new RangeError(`overviews of a bit-packed mask are 'max', not '${resampling}'`);
  const levels: Level[] = [];
  let above = full;
  for (const [w, h] of overviewSizes(full.width, full.height, tile)) {
    above = halvePacked(above, w, h);
    levels.push({ width: w, height: h, data: above });
  }
  return levels;
}

/** The even bits of a word, packed into its low 16 bits. */
function evenBits(v: number): number {
  let x = v & 0x55555555;
  x = (x | (x >>> 1)) & 0x33333333;
  x = (x | (x >>> 2)) & 0x0f0f0f0f;
  x = (x | (x >>> 4)) & 0x00ff00ff;
  return (x | (x >>> 8)) & 0x0000ffff;
}

/**
 * halveBand's max on bits: rows 2j and 2j + 1 (2j alone on an odd height's last row) are OR-ed,
 * then each pair of neighbouring bits. An odd width's last pixel pairs with the always-0 bit
 * past the width, so it is its own max, as in halveBand.
 */
export function halvePacked(p: PackedMask, w: number, h: number): PackedMask {
  const out = emptyPacked(w, h);
  const { stride: ss, words: src, height: sh } = p;
  const { stride: os, words: dst } = out;
  for (let j = 0; j < h; j++) {
    const r0 = 2 * j * ss;
    const r1 = 2 * j + 1 < sh ? r0 + ss : r0;
    const o = j * os;
    for (let m = 0; m < os; m++) {
      const a = 2 * m < ss ? src[r0 + 2 * m] | src[r1 + 2 * m] : 0;
      const b = 2 * m + 1 < ss ? src[r0 + 2 * m + 1] | src[r1 + 2 * m + 1] : 0;
      if ((a | b) === 0) continue;
      dst[o + m] = evenBits(a | (a >>> 1)) | (evenBits(b | (b >>> 1)) << 16);
    }
  }
  return out;
}

function nearestBand(full: PixelLevel, out: Pixels, w: number, h: number, band: number): void {
  const src = full.data;
  const srcOff = band * full.width * full.height;
  const dstOff = band * w * h;
  const xs = new Int32Array(w);
  for (let i = 0; i < w; i++) xs[i] = Math.min(full.width - 1, Math.floor(((i + 0.5) * full.width) / w));
  for (let j = 0; j < h; j++) {
    const y = Math.min(full.height - 1, Math.floor(((j + 0.5) * full.height) / h));
    const row = srcOff + y * full.width;
    const o = dstOff + j * w;
    for (let i = 0; i < w; i++) out[o + i] = src[row + xs[i]!]!;
  }
}

/** One band of a level from the level above: 2x2 max or mean; edge pixels use what exists. */
function halveBand(above: PixelLevel, out: Pixels, w: number, h: number, band: number, max: boolean): void {
  const src = above.data;
  const sw = above.width;
  const sh = above.height;
  const srcOff = band * sw * sh;
  const dstOff = band * w * h;
  // Columns whose 2x2 block lies inside the row (all but an odd width's last one).
  const full = sw >> 1;
  for (let j = 0; j < h; j++) {
    const r0 = srcOff + 2 * j * sw;
    const tall = 2 * j + 1 < sh;
    const r1 = tall ? r0 + sw : r0;
    const o = dstOff + j * w;
    if (max) {
      for (let i = 0, x = 0; i < full; i++, x += 2) {
        const a = src[r0 + x]!;
        const b = src[r0 + x + 1]!;
        const c = src[r1 + x]!;
        const d = src[r1 + x + 1]!;
        const m = a > b ? a : b;
        const n = c > d ? c : d;
        out[o + i] = m > n ? m : n;
      }
      if (full < w) out[o + full] = Math.max(src[r0 + 2 * full]!, src[r1 + 2 * full]!);
    } else {
      // Duplicated edge samples count once: the mean of the pixels that exist.
      for (let i = 0, x = 0; i < full; i++, x += 2) {
        out[o + i] = tall ? (src[r0 + x]! + src[r0 + x + 1]! + src[r1 + x]! + src[r1 + x + 1]!) / 4 : (src[r0 + x]! + src[r0 + x + 1]!) / 2;
      }
      if (full < w) out[o + full] = tall ? (src[r0 + 2 * full]! + src[r1 + 2 * full]!) / 2 : src[r0 + 2 * full]!;
    }
  }
}
