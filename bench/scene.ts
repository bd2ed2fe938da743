/**
 * The benchmark scene: each band of the real (10x decimated) 29RKH sample tiled `factor` x
 * `factor` times with alternate copies mirrored, so edges meet and every pixel is real data.
 * factor 10 gives the per-band layout of a real Sentinel-2 tile (10 m bands 10980x10980, 20 m
 * 5490x5490, 60 m 1830x1830, SCL at 20 m), written like its COGs: tiled 1024, DEFLATE,
 * predictor 2. Never upsampled instead: that compresses ~33x better and makes decoding look cheap.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { closeTiff, geoInfoOf, openTiff, readSamples } from '../raster/tiff-file.ts';
import { sceneLayout } from '../shared/tiling.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SAMPLE_DIR = path.resolve(REPO, '..', 'shared', 'data', 's2-l2a-29RKH');
export const CACHE_DIR = path.join(REPO, 'bench', 'cache');

/** Every file of a STAC-less band folder, as real products name them. */
export const SCENE_FILES = ['B01', 'B02', 'B03', 'B04', 'B05', 'B06', 'B07', 'B08', 'B8A', 'B09', 'B11', 'B12', 'SCL'] as const;

/** Bump when the layout or encoding of the cached scene changes. */
const BUILDER = 'bench/scene.ts v1: mirrored tiling, tile 1024, DEFLATE, predictor 2';

export interface BenchScene {
  dir: string;
  /** Mirrored copies per axis. */
  factor: number;
  /** Size of the 10 m grid. */
  width: number;
  height: number;
  chips: number;
  /** Bytes on disk, all files. */
  bytes: number;
}

/** `src` (w x h) tiled factor x factor, odd copies flipped on their axis so neighbours meet. */
export function mirrorTile<T extends Uint8Array | Uint16Array>(src: T, w: number, h: number, factor: number, make: (n: number) => T): T {
  const W = w * factor;
  const out = make(W * h * factor);
  const row = make(W);
  for (let y = 0; y < h * factor; y++) {
    const ty = Math.floor(y / h);
    const sy = ty % 2 === 0 ? y % h : h - 1 - (y % h);
    const s = src.subarray(sy * w, (sy + 1) * w);
    for (let tx = 0; tx < factor; tx++) {
      if (tx % 2 === 0) row.set(s, tx * w);
      else for (let i = 0; i < w; i++) row[tx * w + i] = s[w - 1 - i]!;
    }
    out.set(row, y * W);
  }
  return out;
}

async function buildBand(name: string, factor: number, dir: string): Promise<void> {
  const file = await openTiff(path.join(SAMPLE_DIR, `${name}.tif`), `sample ${name}`);
  try {
    const geo = await geoInfoOf(file);
    const [data] = await readSamples(file, { x: 0, y: 0, width: file.width, height: file.height }, [0]);
    const u8 = file.sampleType === 'uint8';
    const tiled = u8
      ? mirrorTile(data as Uint8Array, file.width, file.height, factor, (n) => new Uint8Array(n))
      : mirrorTile(data as Uint16Array, file.width, file.height, factor, (n) => new Uint16Array(n));
    // The sample is decimated 10x: its 100 m pixels are 10 m ones in a real product.
    const full = { ...geo, width: file.width * factor, height: file.height * factor, pixelSize: [geo.pixelSize[0] / 10, geo.pixelSize[1] / 10] as [number, number] };
    await writeGeoTiff(path.join(dir, `${name}.tif`), { width: full.width, height: full.height, data: tiled, geo: full, tileSize: 1024, predictor: 2, nodata: 0 });
  } finally {
    await closeTiff(file.tiff);
  }
}

interface Stamp {
  builder: string;
  factor: number;
  width: number;
  bytes: number;
}

/**
 * The cached scene for `factor` (bench/cache/full for 10, bench/cache/mirror<f> otherwise),
 * built once; a stamp written last marks it complete.
 */
export async function ensureScene(factor: number, log: (line: string) => void): Promise<BenchScene> {
  const dir = path.join(CACHE_DIR, factor === 10 ? 'full' : `mirror${factor}`);
  const stampFile = path.join(dir, 'bench-scene.json');
  const finish = (s: Stamp): BenchScene => {
    const layout = sceneLayout(s.width, s.width);
    return { dir, factor, width: s.width, height: s.width, chips: layout.count, bytes: s.bytes };
  };
  if (existsSync(stampFile)) {
    const stamp = JSON.parse(await readFile(stampFile, 'utf8')) as Stamp;
    if (stamp.builder === BUILDER && stamp.factor === factor) return finish(stamp);
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const t0 = performance.now();
  log(`building the ${factor}x${factor} mirrored scene in ${path.relative(REPO, dir)} (once; cached)`);
  let bytes = 0;
  for (const name of SCENE_FILES) {
    await buildBand(name, factor, dir);
    const { size } = await stat(path.join(dir, `${name}.tif`));
    bytes += size;
    log(`  ${name}.tif ${(size / 1e6).toFixed(1)} MB`);
  }
  const sample = await openTiff(path.join(SAMPLE_DIR, 'B02.tif'), 'sample B02');
  const width = sample.width * factor;
  await closeTiff(sample.tiff);
  const stamp: Stamp = { builder: BUILDER, factor, width, bytes };
  await writeFile(stampFile, `${JSON.stringify(stamp, null, 2)}\n`);
  log(`scene ready: ${width}x${width}, ${(bytes / 1e6).toFixed(0)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return finish(stamp);
}
