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
export type OverviewResampling = 'nearest' | 'max' | 'average';

export type Pixels = Uint8Array | Uint16Array | Float32Array;

/** One image of a pyramid: band-major pixels [bands][height][width]. */
export interface Level {
  width: number;
  height: number;
  data: Pixels;
}

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
  const levels: Level[] = [];
  let above = full;
  for (const [w, h] of overviewSizes(full.width, full.height, tile)) {
    const Ctor = full.data.constructor as new (n: number) => Pixels;
    const data = new Ctor(w * h * bands);
    for (let b = 0; b < bands; b++) {
      if (resampling === 'nearest') nearestBand(full, data, w, h, b);
      else halveBand(above, data, w, h, b, resampling === 'max');
    }
    above = { width: w, height: h, data };
    levels.push(above);
  }
  return levels;
}

function nearestBand(full: Level, out: Pixels, w: number, h: number, band: number): void {
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
function halveBand(above: Level, out: Pixels, w: number, h: number, band: number, max: boolean): void {
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
