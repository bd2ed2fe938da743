/**
 * A quick-look PNG: true colour (B04, B03, B02) box-averaged down so the long side fits
 * `maxSide`, with cloud tinted yellow and shadow magenta in proportion to their share of each
 * output pixel. Nodata is black.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { CloudMaskError, fsReason } from '../shared/errors.ts';
import { encodePng } from './png.ts';
import { offsetStatus } from './product-mask.ts';
import type { SceneReader } from './types.ts';

export interface QuicklookArgs {
  reader: SceneReader;
  /** 0/1 per scene pixel. */
  cloud: Uint8Array;
  /** 0/1 per scene pixel. */
  shadow: Uint8Array;
  width: number;
  height: number;
  /** Longest side of the PNG in pixels; default 1024. */
  maxSide?: number;
}

/** DN mapped to white (after removing a baseline-04.00 offset), and the display gamma. */
const WHITE_DN = 4000;
const GAMMA = 1 / 1.4;
const CLOUD_RGB = [255, 230, 0];
const SHADOW_RGB = [255, 0, 255];
const TINT = 0.55;
const RGB_BANDS = [3, 2, 1]; // B04, B03, B02

export async function writeQuicklook(path: string, args: QuicklookArgs): Promise<void> {
  const { reader, cloud, shadow, width, height } = args;
  if (cloud.length !== width * height || shadow.length !== width * height) {
    throw new RangeError(`writeQuicklook: cloud/shadow must have ${width}x${height} values`);
  }
  const step = Math.max(1, Math.ceil(Math.max(width, height) / (args.maxSide ?? 1024)));
  const ow = Math.ceil(width / step);
  const oh = Math.ceil(height / step);
  const acc = new Accumulator(ow * oh);
  const offset = offsetStatus(reader.metadata).offsetInData ? 1000 : 0;
  const rows = Math.max(step, Math.floor(4_000_000 / width / step) * step);
  for (let y0 = 0; y0 < height; y0 += rows) {
    const h = Math.min(rows, height - y0);
    const px = await reader.readWindow({ x: 0, y: y0, width, height: h }, RGB_BANDS);
    acc.add(px, width, h, y0, step, ow, cloud, shadow);
  }
  const png = encodePng(ow, oh, acc.render(offset));
  await writeAtomically(path, png);
}

class Accumulator {
  readonly sum: Float64Array;
  readonly valid: Uint32Array;
  readonly total: Uint32Array;
  readonly cloud: Uint32Array;
  readonly shadow: Uint32Array;
  constructor(readonly n: number) {
    this.sum = new Float64Array(n * 3);
    this.valid = new Uint32Array(n);
    this.total = new Uint32Array(n);
    this.cloud = new Uint32Array(n);
    this.shadow = new Uint32Array(n);
  }

  add(px: Uint16Array, width: number, h: number, y0: number, step: number, ow: number, cloud: Uint8Array, shadow: Uint8Array): void {
    const plane = width * h;
    for (let j = 0; j < h; j++) {
      const orow = Math.floor((y0 + j) / step) * ow;
      for (let x = 0; x < width; x++) {
        const o = orow + Math.floor(x / step);
        const i = j * width + x;
        const g = (y0 + j) * width + x;
        this.total[o]!++;
        this.cloud[o]! += cloud[g]!;
        this.shadow[o]! += shadow[g]!;
        const r = px[i]!;
        const gr = px[plane + i]!;
        const b = px[2 * plane + i]!;
        if (r === 0 || gr === 0 || b === 0) continue;
        this.valid[o]!++;
        this.sum[o * 3] += r;
        this.sum[o * 3 + 1] += gr;
        this.sum[o * 3 + 2] += b;
      }
    }
  }

  render(offset: number): Uint8Array {
    const rgb = new Uint8Array(this.n * 3);
    const stretch = (dn: number): number => 255 * Math.pow(Math.min(1, Math.max(0, (dn - offset) / WHITE_DN)), GAMMA);
    for (let o = 0; o < this.n; o++) {
      if (this.valid[o] === 0) continue;
      const c = [0, 1, 2].map((k) => stretch(this.sum[o * 3 + k]! / this.valid[o]!));
      const a = (TINT * this.cloud[o]!) / this.total[o]!;
      const s = (TINT * this.shadow[o]!) / this.total[o]!;
      for (let k = 0; k < 3; k++) {
        const v = c[k]! * (1 - a) + CLOUD_RGB[k]! * a;
        rgb[o * 3 + k] = Math.round(v * (1 - s) + SHADOW_RGB[k]! * s);
      }
    }
    return rgb;
  }
}

async function writeAtomically(path: string, data: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await writeFile(tmp, data, { flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw new CloudMaskError('OUTPUT_FAILED', `cannot write quick-look ${path}: ${fsReason(err)}`, { cause: err });
  }
}
