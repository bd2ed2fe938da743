/**
 * Stitching: every chip's write window lands in scene-sized bit planes (cloud, shadow, nodata,
 * product mask), each output pixel written by exactly one chip. Duplicate results (redeliveries,
 * replays) are ignored. The planes stay packed (coordinator/merge/packed.ts) through the merge:
 * a full tile is 4 x 15 MB, and stitching, OR-ing and counting go 32 pixels at a time.
 */
import { emptyPacked, orBitsInto, orInto, orPacked, packMask, unpackMask, type PackedMask } from '../shared/packed-mask.ts';
import type { TileResult } from '../shared/messages.ts';
import { DiskDilation } from './merge/dilate.ts';

export const FLAG_CLOUD = 1;
export const FLAG_SHADOW = 2;
export const FLAG_NODATA = 4;
export const FLAG_PRODUCT = 8;

export type Plane = 'cloud' | 'shadow' | 'nodata' | 'product';
const PLANE_FLAGS: ReadonlyArray<[Plane, number]> = [['cloud', FLAG_CLOUD], ['shadow', FLAG_SHADOW], ['nodata', FLAG_NODATA], ['product', FLAG_PRODUCT]];

/** A finished stitch as the outputs read it: plain data, so it can move to an output thread. */
export interface Stitched {
  readonly width: number;
  readonly height: number;
  readonly planes: Readonly<Record<Plane, PackedMask>>;
  readonly cloudProb: Float32Array | null;
  readonly shadowProb: Float32Array | null;
  /** The merge input ({@link mergeInput}) dilated by a disk of `radius`, when it was dilated as the chips came; null: not done. */
  readonly dilated: { radius: number; mask: PackedMask } | null;
}

/** The planes the merge takes: cloud, shadow, product (nodata is already cloud through its forced probability). */
function mergePlanes(s: Pick<Stitched, 'planes'>): [PackedMask, ...PackedMask[]] {
  return [s.planes.cloud, s.planes.shadow, s.planes.product];
}

/** The merge input: the OR of its planes. */
export function mergeInput(s: Stitched): PackedMask {
  return orPacked(...mergePlanes(s));
}

/** One plane as 0/1 bytes (the quick-look's input). */
export function planeBytes(s: Stitched, plane: Plane): Uint8Array {
  return unpackMask(s.planes[plane]);
}

/** Per pixel, the FLAG_* bits of every plane: the classes raster's input. */
export function flagsOf(s: Stitched): Uint8Array {
  const out = new Uint8Array(s.width * s.height);
  for (const [name, flag] of PLANE_FLAGS) {
    const bits = unpackMask(s.planes[name]);
    for (let i = 0; i < out.length; i++) out[i] |= bits[i] * flag;
  }
  return out;
}

export class Stitcher implements Stitched {
  readonly width: number;
  readonly height: number;
  readonly planes: Readonly<Record<Plane, PackedMask>>;
  readonly cloudProb: Float32Array | null;
  readonly shadowProb: Float32Array | null;
  private readonly seen: Uint8Array;
  private doneCount = 0;
  skipped = 0;
  /** Pixels of each row written so far: a row is final when all `width` are (each pixel is written by one chip). */
  private readonly rowPixels: Int32Array;
  /** Rows 0 .. finalRows-1 are final. */
  private finalRows = 0;
  /** The merge's dilation, fed final rows as chips complete (see {@link dilateAsChipsCome}). */
  private dilation: DiskDilation | null = null;

  constructor(width: number, height: number, chips: number, withProbabilities: boolean) {
    this.width = width;
    this.height = height;
    this.planes = { cloud: emptyPacked(width, height), shadow: emptyPacked(width, height), nodata: emptyPacked(width, height), product: emptyPacked(width, height) };
    this.seen = new Uint8Array(chips);
    this.cloudProb = withProbabilities ? new Float32Array(width * height) : null;
    this.shadowProb = withProbabilities ? new Float32Array(width * height) : null;
    this.rowPixels = new Int32Array(height);
  }

  /**
   * From now on, dilates the merge input by a disk of `radius` as its rows become final (all
   * their chips in), so that little of the merge is left when the last chip comes; call it once
   * every whole-plane change (the product mask) is in. A later whole-plane change drops it (the
   * outputs then dilate the whole, as without it).
   */
  dilateAsChipsCome(radius: number): void {
    this.dilation = new DiskDilation(this.width, this.height, radius);
    this.dilation.feed(mergePlanes(this), this.finalRows);
  }

  /** The merge input dilated, when the stitch is complete and it was dilated as the chips came. */
  get dilated(): { radius: number; mask: PackedMask } | null {
    if (!this.dilation || !this.complete) return null;
    return { radius: this.dilation.radius, mask: this.dilation.finish(mergePlanes(this)) };
  }


  get done(): number {
    return this.doneCount;
  }

  get complete(): boolean {
    return this.doneCount === this.seen.length;
  }

  has(chipIndex: number): boolean {
    return this.seen[chipIndex] === 1;
  }

  /** Adds a chip's result; returns false when it was a duplicate. */
  add(result: TileResult): boolean {
    if (result.chipIndex >= this.seen.length) throw new RangeError(`chip ${result.chipIndex} outside 0..${this.seen.length - 1}`);
    if (this.seen[result.chipIndex]) return false;
    const { x, y, width, height } = result.write;
    if (x < 0 || y < 0 || x + width > this.width || y + height > this.height) {
      throw new RangeError(`chip ${result.chipIndex} write window ${width}x${height}+${x}+${y} outside the ${this.width}x${this.height} scene`);
    }
    this.seen[result.chipIndex] = 1;
    this.doneCount++;
    if (result.skipped) this.skipped++;
    orBitsInto(this.planes.cloud, result.cloud, width, height, x, y);
    orBitsInto(this.planes.shadow, result.shadow, width, height, x, y);
    orBitsInto(this.planes.nodata, result.nodata, width, height, x, y);
    if (this.cloudProb && this.shadowProb && result.cloudProb && result.shadowProb) {
      for (let r = 0; r < height; r++) {
        const o = (y + r) * this.width + x;
        this.cloudProb.set(result.cloudProb.subarray(r * width, (r + 1) * width), o);
        this.shadowProb.set(result.shadowProb.subarray(r * width, (r + 1) * width), o);
      }
    }
    for (let r = y; r < y + height; r++) this.rowPixels[r] += width;
    const before = this.finalRows;
    while (this.finalRows < this.height && this.rowPixels[this.finalRows] === this.width) this.finalRows++;
    if (this.finalRows > before) this.dilation?.feed(mergePlanes(this), this.finalRows);
    return true;
  }

  /** ORs a scene-sized 0/1 raster into a plane (a test's pixels, a measurement's). */
  orRaster(plane: Plane, raster: Uint8Array): void {
    this.dilation = null;
    orInto(this.planes[plane], packMask(raster, this.width, this.height));
  }

  /** ORs the product mask in. */
  addProductMask(mask: PackedMask): void {
    this.dilation = null;
    orInto(this.planes.product, mask);
  }
}

/** Class codes of the optional `--classes` raster. */
export const CLASS_CODES = { clear: 0, cloud: 1, shadow: 2, productOnly: 3, nodata: 4, buffer: 5 } as const;

/**
 * The classes raster straight from the bit planes and the merged mask (the same classes as
 * classify(flagsOf(s), merged), which the tests compare it with): a word of 32 pixels at a time,
 * clear words skipped and uniform ones filled.
 */
export function classesOf(s: Stitched, merged: PackedMask): Uint8Array {
  const { width, height } = s;
  const out = new Uint8Array(width * height);
  const { stride } = merged;
  const nd = s.planes.nodata.words;
  const cl = s.planes.cloud.words;
  const sh = s.planes.shadow.words;
  const pr = s.planes.product.words;
  const mg = merged.words;
  const C = CLASS_CODES;
  for (let y = 0; y < height; y++) {
    const o = y * width;
    for (let k = 0; k < stride; k++) {
      const i = y * stride + k;
      const n = nd[i];
      const c = cl[i];
      const h = sh[i];
      const p = pr[i];
      const m = mg[i];
      if ((n | c | h | p | m) === 0) continue;
      const x0 = o + (k << 5);
      const count = Math.min(32, width - (k << 5));
      if (n === -1) out.fill(C.nodata, x0, x0 + count);
      else if (n === 0 && c === -1) out.fill(C.cloud, x0, x0 + count);
      else if ((n | c | h | p) === 0 && m === -1) out.fill(C.buffer, x0, x0 + count);
      else {
        for (let b = 0; b < count; b++) {
          const bit = 1 << b;
          out[x0 + b] = n & bit ? C.nodata : c & bit ? C.cloud : h & bit ? C.shadow : p & bit ? C.productOnly : m & bit ? C.buffer : C.clear;
        }
      }
    }
  }
  return out;
}

/** Classes raster: nodata, then cloud, then shadow, then product-only, then dilation buffer. */
export function classify(flags: Uint8Array, merged: Uint8Array): Uint8Array {
  const out = new Uint8Array(flags.length);
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i];
    out[i] =
      f & FLAG_NODATA ? CLASS_CODES.nodata
      : f & FLAG_CLOUD ? CLASS_CODES.cloud
      : f & FLAG_SHADOW ? CLASS_CODES.shadow
      : f & FLAG_PRODUCT ? CLASS_CODES.productOnly
      : merged[i] ? CLASS_CODES.buffer
      : CLASS_CODES.clear;
  }
  return out;
}
