/**
 * Stitching: every chip's write window lands in one scene-sized raster of flags, each output
 * pixel written by exactly one chip. Duplicate results (redeliveries, replays) are ignored.
 */
import { orPackedInto } from '../shared/bitpack.ts';
import type { TileResult } from '../shared/messages.ts';

export const FLAG_CLOUD = 1;
export const FLAG_SHADOW = 2;
export const FLAG_NODATA = 4;
export const FLAG_PRODUCT = 8;

export class Stitcher {
  readonly width: number;
  readonly height: number;
  /** Per pixel: FLAG_* bits. */
  readonly flags: Uint8Array;
  readonly cloudProb: Float32Array | null;
  readonly shadowProb: Float32Array | null;
  private readonly seen: Uint8Array;
  private doneCount = 0;
  skipped = 0;

  constructor(width: number, height: number, chips: number, withProbabilities: boolean) {
    this.width = width;
    this.height = height;
    this.flags = new Uint8Array(width * height);
    this.seen = new Uint8Array(chips);
    this.cloudProb = withProbabilities ? new Float32Array(width * height) : null;
    this.shadowProb = withProbabilities ? new Float32Array(width * height) : null;
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
    orPackedInto(result.cloud, width, height, this.flags, this.width, x, y, FLAG_CLOUD);
    orPackedInto(result.shadow, width, height, this.flags, this.width, x, y, FLAG_SHADOW);
    orPackedInto(result.nodata, width, height, this.flags, this.width, x, y, FLAG_NODATA);
    if (this.cloudProb && this.shadowProb && result.cloudProb && result.shadowProb) {
      for (let r = 0; r < height; r++) {
        const o = (y + r) * this.width + x;
        this.cloudProb.set(result.cloudProb.subarray(r * width, (r + 1) * width), o);
        this.shadowProb.set(result.shadowProb.subarray(r * width, (r + 1) * width), o);
      }
    }
    return true;
  }

  /** ORs the product mask (0/1 per pixel) in. */
  addProductMask(mask: Uint8Array): void {
    const f = this.flags;
    for (let i = 0; i < f.length; i++) if (mask[i]) f[i] |= FLAG_PRODUCT;
  }
}

/** The merge input: cloud | shadow | product (nodata is already cloud through its forced probability). */
export function mergeInput(flags: Uint8Array): Uint8Array {
  const out = new Uint8Array(flags.length);
  const m = FLAG_CLOUD | FLAG_SHADOW | FLAG_PRODUCT;
  for (let i = 0; i < flags.length; i++) out[i] = flags[i] & m ? 1 : 0;
  return out;
}

/** Class codes of the optional `--classes` raster. */
export const CLASS_CODES = { clear: 0, cloud: 1, shadow: 2, productOnly: 3, nodata: 4, buffer: 5 } as const;

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
