/**
 * The real L2A tile s2-l2a-29RKH (rio-tiler-pds fixtures, BSD-3-Clause; contains modified
 * Copernicus Sentinel data) on its 20 m grid, with Sen2Cor's SCL classes, for evaluation.
 */
import path from 'node:path';
import { fromFile } from 'geotiff';
import { INPUT_BANDS } from '../../shared/manifest.ts';

export interface SclScene {
  width: number;
  height: number;
  dn: Float32Array; // [1, 12, H, W]
  reflectance: Float32Array[]; // B02,B03,B04,B08,B11,B12
  /** Sen2Cor scene classification per pixel. */
  scl: Uint8Array;
  sclCloud: Uint8Array;
  sclShadow: Uint8Array;
  valid: Int32Array;
}

const L2A_BANDS = ['B01', 'B02', 'B03', 'B04', 'B05', 'B06', 'B07', 'B08', 'B8A', 'B09', 'B11', 'B12'] as const;

async function readBand(file: string): Promise<{ data: ArrayLike<number>; width: number; height: number }> {
  const image = await (await fromFile(file)).getImage();
  const data = (await image.readRasters())[0] as unknown as ArrayLike<number>;
  return { data, width: image.getWidth(), height: image.getHeight() };
}

/** Resamples a band to size x size: block mean when larger (10 m -> 20 m), nearest when smaller (60 m). */
function toGrid(band: { data: ArrayLike<number>; width: number }, size: number): Float32Array {
  const out = new Float32Array(size * size);
  const f = band.width / size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (f >= 1) {
        let s = 0;
        for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) s += band.data[(y * f + dy) * band.width + x * f + dx]!;
        out[y * size + x] = s / (f * f);
      } else {
        out[y * size + x] = band.data[Math.floor(y * f) * band.width + Math.floor(x * f)]!;
      }
    }
  }
  return out;
}

/** Every band on the SCL grid (10 m bands: 2x2 mean; 60 m bands: nearest), as FarmVibes-ordered DN. */
export async function loadSclScene(dataDir: string): Promise<SclScene> {
  const dir = path.join(dataDir, 's2-l2a-29RKH');
  const scl = await readBand(path.join(dir, 'SCL.tif'));
  const size = scl.width;
  const plane = size * size;
  const dn = new Float32Array(INPUT_BANDS * plane);
  for (let b = 0; b < INPUT_BANDS; b++) dn.set(toGrid(await readBand(path.join(dir, `${L2A_BANDS[b]}.tif`)), size), b * plane);
  const reflectance = [1, 2, 3, 7, 10, 11].map((b) => dn.slice(b * plane, (b + 1) * plane).map((v) => v * 1e-4));
  const sclCloud = new Uint8Array(plane);
  const sclShadow = new Uint8Array(plane);
  const valid: number[] = [];
  for (let p = 0; p < plane; p++) {
    const c = scl.data[p]!;
    sclCloud[p] = c === 8 || c === 9 || c === 10 ? 1 : 0;
    sclShadow[p] = c === 3 ? 1 : 0;
    let ok = c !== 0;
    for (let b = 0; b < INPUT_BANDS && ok; b++) ok = dn[b * plane + p] !== 0;
    if (ok) valid.push(p);
  }
  return { width: size, height: size, dn, reflectance, scl: Uint8Array.from(scl.data), sclCloud, sclShadow, valid: Int32Array.from(valid) };
}


/**
 * Hard negatives for the cloud model: every 8th pixel (both axes) of the tile's western part
 * (columns 0..259, rows 60..548 of the 20 m grid), bright bare desert that SCL marks cloud-free.
 * The ukis scene has no such terrain, and without these a model trained on it alone calls
 * 16 % of this tile cloud. About 2k pixels.
 */
export const HARD_NEGATIVES = { colEnd: 260, rowStart: 60, stride: 8 } as const;

/** SCL agreement is reported on columns 274.. (the eastern half, with all the tile's clouds): never trained on. */
export const SCL_HELD_OUT_COL_START = 274;

export function hardNegativePixels(scene: SclScene): Int32Array {
  const out: number[] = [];
  const valid = new Uint8Array(scene.width * scene.height);
  for (const p of scene.valid) valid[p] = 1;
  for (let y = HARD_NEGATIVES.rowStart; y < scene.height; y += HARD_NEGATIVES.stride) {
    for (let x = 0; x < HARD_NEGATIVES.colEnd; x += HARD_NEGATIVES.stride) {
      const p = y * scene.width + x;
      if (!valid[p]) continue;
      if (scene.sclCloud[p] || scene.sclShadow[p]) throw new Error(`hard-negative pixel (${y},${x}) is cloud or shadow in SCL`);
      out.push(p);
    }
  }
  return Int32Array.from(out);
}

export function sclHeldOutPixels(scene: SclScene): Int32Array {
  return scene.valid.filter((p) => p % scene.width >= SCL_HELD_OUT_COL_START);
}
