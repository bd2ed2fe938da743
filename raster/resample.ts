/**
 * Upsampling a coarse band (20 m, 60 m) onto the 10 m grid by an integer ratio, as pure functions
 * of GLOBAL pixel coordinates: any window gives exactly the pixels of a whole-image read.
 *
 * Bilinear follows GDAL: the source coordinate of target pixel x is sx = (x + 0.5) / r - 0.5;
 * the two neighbours per axis get weights (1 - f) and f; neighbours outside the source image or
 * equal to 0 (nodata) are dropped and the remaining weights renormalised; when all are dropped
 * the result is 0. Values are rounded to nearest.
 */
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
  const lo = Math.floor((t0 + 0.5) / ratio);
  const hi = Math.floor((t0 + n - 1 + 0.5) / ratio) + 1;
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
  const taps: AxisTaps = { i0: new Int32Array(n), i1: new Int32Array(n), w0: new Float64Array(n), w1: new Float64Array(n) };
  const footprint = srcSize * ratio;
  for (let k = 0; k < n; k++) {
    const t = t0 + k;
    taps.i0[k] = -1;
    taps.i1[k] = -1;
    if (t < 0 || t >= footprint) continue; // outside the scene: nodata
    const s = (t + 0.5) / ratio - 0.5;
    const a = Math.floor(s);
    const f = s - a;
    const w = [1 - f, f];
    [a, a + 1].forEach((src, j) => {
      if (src < 0 || src >= srcSize || w[j]! === 0) return;
      const rel = src - blockStart;
      if (rel < 0 || rel >= blockSize) throw new RangeError(`source block misses pixel ${src} needed for target ${t}`);
      (j === 0 ? taps.i0 : taps.i1)[k] = rel;
      (j === 0 ? taps.w0 : taps.w1)[k] = w[j]!;
    });
  }
  return taps;
}

/**
 * Bilinear upsampling of `block` (a window of a `srcWidth` x `srcHeight` image) by `ratio` onto
 * the target window `target` of the fine grid. Returns target.width * target.height values.
 */
export function resampleBilinear(block: SourceBlock, srcWidth: number, srcHeight: number, ratio: number, target: Window, out?: Uint16Array): Uint16Array {
  const { width: tw, height: th } = target;
  const dst = out ?? new Uint16Array(tw * th);
  const cols = axisTaps(target.x, tw, ratio, srcWidth, block.x, block.width);
  const rows = axisTaps(target.y, th, ratio, srcHeight, block.y, block.height);
  const src = block.data;
  const bw = block.width;
  for (let j = 0; j < th; j++) {
    const ry = [rows.i0[j]!, rows.i1[j]!];
    const wy = [rows.w0[j]!, rows.w1[j]!];
    const o = j * tw;
    for (let i = 0; i < tw; i++) {
      const cx0 = cols.i0[i]!;
      const cx1 = cols.i1[i]!;
      let sum = 0;
      let wsum = 0;
      for (let a = 0; a < 2; a++) {
        const r = ry[a]!;
        if (r < 0) continue;
        const base = r * bw;
        if (cx0 >= 0) {
          const v = src[base + cx0]!;
          if (v !== 0) {
            const w = wy[a]! * cols.w0[i]!;
            sum += w * v;
            wsum += w;
          }
        }
        if (cx1 >= 0) {
          const v = src[base + cx1]!;
          if (v !== 0) {
            const w = wy[a]! * cols.w1[i]!;
            sum += w * v;
            wsum += w;
          }
        }
      }
      dst[o + i] = wsum > 0 ? Math.min(65535, Math.max(1, Math.round(sum / wsum))) : 0;
    }
  }
  return dst;
}

/** Nearest-neighbour upsampling (for class bands such as SCL): source pixel floor((x + 0.5) / r). */
export function resampleNearest<T extends Uint8Array | Uint16Array>(block: SourceBlock, srcWidth: number, srcHeight: number, ratio: number, target: Window, out: T): T {
  const { width: tw, height: th } = target;
  const colIdx = new Int32Array(tw);
  for (let i = 0; i < tw; i++) {
    const s = Math.floor((target.x + i + 0.5) / ratio);
    colIdx[i] = target.x + i >= 0 && s < srcWidth ? s - block.x : -1;
  }
  for (let j = 0; j < th; j++) {
    const t = target.y + j;
    const s = Math.floor((t + 0.5) / ratio);
    const o = j * tw;
    if (t < 0 || s >= srcHeight) {
      out.fill(0, o, o + tw);
      continue;
    }
    const base = (s - block.y) * block.width;
    for (let i = 0; i < tw; i++) {
      const c = colIdx[i]!;
      out[o + i] = c >= 0 ? block.data[base + c]! : 0;
    }
  }
  return out;
}
