/**
 * The labelled scene used to train and judge the bundled models (dlr-eoc/ukis-csmask test files,
 * Apache-2.0; contains modified Copernicus Sentinel data), and the fixed train / held-out split.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromFile } from 'geotiff';

/** `<repo>/../shared/data`, where the project's real Sentinel-2 test data lives. */
export function sharedDataDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared', 'data');
}

/** Indices of the ukis bands (B02,B03,B04,B08,B11,B12) in the 12-band FarmVibes order. */
export const UKIS_BAND_SLOTS = [1, 2, 3, 7, 10, 11] as const;

/**
 * The split, fixed once and never tuned on: rows 384..511 (the bottom 128 rows, all 384 columns)
 * are held out; training uses rows 0..375. The 8 rows in between are a guard band so the models'
 * 3x3 spatial context never lets a training pixel see a held-out one. The held-out block holds
 * about 2.6k shadow and 5.3k cloud pixels out of 49k.
 */
export const SPLIT = { trainRowsEnd: 376, heldOutRowStart: 384, heldOutRowEnd: 512 } as const;

export const LABEL = { shadow: 0, cloud: 4 } as const;

export interface UkisScene {
  width: number;
  height: number;
  /** Six float32 TOA reflectance bands: B02, B03, B04, B08, B11, B12. */
  reflectance: Float32Array[];
  /** 0 = cloud shadow, 1/2/3 = clear, 4 = cloud. */
  labels: Uint8Array;
}

export async function loadUkisScene(dataDir = sharedDataDir()): Promise<UkisScene> {
  const dir = path.join(dataDir, 'labels-ukis-s2');
  const image = await (await fromFile(path.join(dir, 'image.tif'))).getImage();
  const labelImage = await (await fromFile(path.join(dir, 'labels.tif'))).getImage();
  const width = image.getWidth();
  const height = image.getHeight();
  const bands = (await image.readRasters()) as unknown as ArrayLike<number>[];
  const labels = (await labelImage.readRasters())[0] as unknown as ArrayLike<number>;
  if (bands.length !== 6 || labelImage.getWidth() !== width || labelImage.getHeight() !== height) {
    throw new Error(`${dir}: expected a 6-band image and a label raster of the same size`);
  }
  return { width, height, reflectance: bands.map((b) => Float32Array.from(b)), labels: Uint8Array.from(labels) };
}

/** The scene as a FarmVibes model input: float32 [1, 12, H, W] raw DN (reflectance x 10000). */
export function toFarmVibesDn(scene: UkisScene, fillUnused = 1): Float32Array {
  const plane = scene.width * scene.height;
  const out = new Float32Array(12 * plane).fill(fillUnused);
  UKIS_BAND_SLOTS.forEach((slot, b) => {
    const src = scene.reflectance[b]!;
    for (let i = 0; i < plane; i++) out[slot * plane + i] = src[i]! * 10000;
  });
  return out;
}

function rowRange(width: number, start: number, end: number): Int32Array {
  const out = new Int32Array((end - start) * width);
  for (let i = 0; i < out.length; i++) out[i] = start * width + i;
  return out;
}

export function trainingPixels(scene: UkisScene): Int32Array {
  return rowRange(scene.width, 0, SPLIT.trainRowsEnd);
}

export function heldOutPixels(scene: UkisScene): Int32Array {
  return rowRange(scene.width, SPLIT.heldOutRowStart, SPLIT.heldOutRowEnd);
}

/** 1 where the pixel belongs to the role's class (cloud = label 4, shadow = label 0), else 0. */
export function targets(scene: UkisScene, role: 'cloud' | 'shadow'): Uint8Array {
  const want = LABEL[role];
  return scene.labels.map((l) => (l === want ? 1 : 0));
}
