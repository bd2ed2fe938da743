/**
 * Opening a scene (stacked 12-band GeoTIFF or one file per band) and reading 12-band windows on
 * the 10 m grid of B02. Coarser bands are resampled bilinearly on the fly (see resample.ts).
 */
import path from 'node:path';
import { CloudMaskError } from '../shared/errors.ts';
import { BAND_NAMES, REFERENCE_BAND } from './bands.ts';
import type { HttpOptions } from './http.ts';
import { bilinearSourceRange, resampleBilinear } from './resample.ts';
import { clipWindow, closeTiff, geoInfoOf, openTiff, readSamples, type TiffFile } from './tiff-file.ts';
import type { TileCache } from './tile-cache.ts';
import type { GeoInfo, SceneMetadata, SceneReader, SceneSource, Window } from './types.ts';

export type { SceneReader } from './types.ts';

const ALL_BANDS: readonly number[] = BAND_NAMES.map((_, i) => i);

/** Where one band's pixels come from: a sample of a file, `ratio` times coarser than the scene grid. */
interface BandPlane {
  file: TiffFile;
  sample: number;
  ratio: number;
}

export interface OpenSceneOptions {
  /** Decoded tiles are kept in (and taken from) this cache, shared by the threads of a process. */
  tileCache?: TileCache;
  /** Headers for every request to an http(s) band file. */
  http?: HttpOptions;
}

/** Opens and validates a scene; every file stays open until close(). */
export async function openScene(source: SceneSource, options: OpenSceneOptions = {}): Promise<SceneReader> {
  if (source.kind === 'stacked') return openStacked(source, options);
  if (source.kind === 'bands') return openBands(source, options);
  throw new CloudMaskError('BAD_INPUT', `unknown scene source kind ${(source as { kind?: unknown }).kind}`);
}

async function openStacked(source: Extract<SceneSource, { kind: 'stacked' }>, options: OpenSceneOptions): Promise<SceneReader> {
  const file = await openTiff(source.href, 'stacked scene', options.http);
  try {
    if (file.samples !== 12) {
      throw new CloudMaskError('BAD_INPUT', `stacked scene ${file.href} has ${plural(file.samples, 'band')}, expected 12 (${BAND_NAMES.join(',')})`);
    }
    checkUint16(file);
    const geo = await geoInfoOf(file);
    const metadata: SceneMetadata = { processingBaseline: null, boaOffsetApplied: null, id: baseName(source.href) };
    const planes = ALL_BANDS.map((sample) => ({ file, sample, ratio: 1 }));
    return new Reader(source, geo, metadata, planes, options.tileCache);
  } catch (err) {
    await closeTiff(file.tiff);
    throw err;
  }
}

async function openBands(source: Extract<SceneSource, { kind: 'bands' }>, options: OpenSceneOptions): Promise<SceneReader> {
  if (source.bands.length !== 12) {
    throw new CloudMaskError('BAD_INPUT', `band source has ${source.bands.length} files, expected 12 (${BAND_NAMES.join(',')})`);
  }
  const opened = await Promise.allSettled(source.bands.map((href, i) => openTiff(href, `band ${BAND_NAMES[i]}`, options.http)));
  const files = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  try {
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    files.forEach((f) => {
      if (f.samples !== 1) throw new CloudMaskError('BAD_INPUT', `${f.label} ${f.href} has ${plural(f.samples, 'band')}, expected 1`);
      checkUint16(f);
    });
    const geos = await Promise.all(files.map((f) => geoInfoOf(f)));
    const geo = geos[REFERENCE_BAND]!;
    const planes = files.map((file, i) => ({ file, sample: 0, ratio: gridRatio(geo, geos[i]!, file) }));
    return new Reader(source, geo, source.metadata, planes, options.tileCache);
  } catch (err) {
    await Promise.all(files.map((f) => closeTiff(f.tiff)));
    throw err;
  }
}

function checkUint16(file: TiffFile): void {
  if (file.sampleType !== 'uint16') {
    throw new CloudMaskError('BAD_INPUT', `${file.label} ${file.href} holds ${file.sampleType} pixels, expected uint16 digital numbers`);
  }
}

/**
 * The integer factor by which `band` is coarser than the scene grid `ref`; BAD_INPUT unless both
 * share CRS, origin and extent.
 */
export function gridRatio(ref: GeoInfo, band: GeoInfo, file: { label: string; href: string }): number {
  const bad = (why: string): CloudMaskError => new CloudMaskError('BAD_INPUT', `${file.label} ${file.href} is not on the grid of B02: ${why}`);
  if (ref.epsg !== null && band.epsg !== null && ref.epsg !== band.epsg) throw bad(`EPSG:${band.epsg} vs EPSG:${ref.epsg}`);
  const rx = band.pixelSize[0] / ref.pixelSize[0];
  const ry = band.pixelSize[1] / ref.pixelSize[1];
  const r = Math.round(rx);
  if (r < 1 || Math.abs(rx - r) > 1e-6 || Math.abs(ry - r) > 1e-6) {
    throw bad(`pixel size ${fmtPair(band.pixelSize)} is not an integer multiple of ${fmtPair(ref.pixelSize)}`);
  }
  const tol = ref.pixelSize[0] * 1e-3;
  if (Math.abs(band.origin[0] - ref.origin[0]) > tol || Math.abs(band.origin[1] - ref.origin[1]) > tol) {
    throw bad(`origin ${fmtPair(band.origin)} vs ${fmtPair(ref.origin)}`);
  }
  if (band.width * r !== ref.width || band.height * r !== ref.height) {
    throw bad(`${band.width}x${band.height} at ${r}x the pixel size does not cover ${ref.width}x${ref.height}`);
  }
  return r;
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
const fmtPair = (p: [number, number]): string => `(${p[0]}, ${p[1]})`;
const baseName = (href: string): string => path.basename(href.replace(/[?#].*$/, '')).replace(/\.tiff?$/i, '');

class Reader implements SceneReader {
  /** Coarse bands' source blocks, reused from read to read (no garbage per window). */
  private readonly scratch = new ScratchPool();

  constructor(
    readonly source: SceneSource,
    readonly geo: GeoInfo,
    readonly metadata: SceneMetadata,
    private readonly planes: BandPlane[],
    private readonly cache?: TileCache,
  ) {}

  async readWindow(win: Window, bands: readonly number[] = ALL_BANDS, into?: Uint16Array): Promise<Uint16Array> {
    checkWindow(win);
    bands.forEach((b) => {
      if (!Number.isInteger(b) || b < 0 || b >= 12) throw new RangeError(`band index ${b} is not in 0..11`);
    });
    const n = win.width * win.height;
    if (into && into.length !== bands.length * n) throw new RangeError(`readWindow: out holds ${into.length} values, expected ${bands.length}x${win.height}x${win.width}`);
    const out = into ?? new Uint16Array(bands.length * n);
    // A reused buffer holds old pixels: what lies outside the scene must become 0 (nodata).
    const clip = clipWindow(win, this.geo.width, this.geo.height);
    if (into && (!clip || clip.width !== win.width || clip.height !== win.height)) out.fill(0);
    if (this.source.kind === 'stacked') {
      await this.readStacked(win, bands, out);
    } else {
      await Promise.all(bands.map((b, k) => this.readPlane(this.planes[b]!, win, out.subarray(k * n, (k + 1) * n))));
    }
    return out;
  }

  /** All requested samples of a stacked file in one geotiff.js call. */
  private async readStacked(win: Window, bands: readonly number[], out: Uint16Array): Promise<void> {
    const clip = clipWindow(win, this.geo.width, this.geo.height);
    if (!clip) return;
    const file = this.planes[0]!.file;
    const arrays = await readSamples(file, clip, bands.map((b) => this.planes[b]!.sample), this.cache);
    arrays.forEach((a, k) => pasteRows(a, clip, win, out.subarray(k * win.width * win.height)));
  }

  private async readPlane(plane: BandPlane, win: Window, dst: Uint16Array): Promise<void> {
    const { file, ratio } = plane;
    if (ratio === 1) {
      const clip = clipWindow(win, file.width, file.height);
      if (!clip) return;
      if (clip.width === win.width && clip.height === win.height) {
        // Inside the scene (the rule): straight into place.
        await readSamples(file, clip, [plane.sample], this.cache, [dst]);
        return;
      }
      const [a] = await readSamples(file, clip, [plane.sample], this.cache);
      pasteRows(a!, clip, win, dst);
      return;
    }
    const [x0, x1] = bilinearSourceRange(win.x, win.width, ratio, file.width);
    const [y0, y1] = bilinearSourceRange(win.y, win.height, ratio, file.height);
    if (x1 <= x0 || y1 <= y0) return;
    const block = { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
    const scratch = this.scratch.take(block.width * block.height);
    try {
      const [data] = await readSamples(file, block, [plane.sample], this.cache, [scratch]);
      resampleBilinear({ ...block, data: data! }, file.width, file.height, ratio, win, dst);
    } finally {
      this.scratch.give(scratch);
    }
  }

  async close(): Promise<void> {
    const unique = [...new Set(this.planes.map((p) => p.file.tiff))];
    await Promise.all(unique.map((t) => closeTiff(t)));
  }
}

/** Uint16 buffers handed out and taken back: concurrent reads each get their own. */
class ScratchPool {
  private readonly free: Uint16Array[] = [];

  /** A buffer of exactly `n` values (a view of a pooled one when one is large enough). */
  take(n: number): Uint16Array {
    const i = this.free.findIndex((b) => b.buffer.byteLength >= 2 * n);
    const buf = i >= 0 ? this.free.splice(i, 1)[0]! : null;
    // Block sizes vary a little from window to window: grow with headroom.
    return buf ? new Uint16Array(buf.buffer, 0, n) : new Uint16Array(new ArrayBuffer(2 * Math.ceil(n * 1.25)), 0, n);
  }

  give(buf: Uint16Array): void {
    if (this.free.length < 16) this.free.push(buf);
  }
}

function checkWindow(win: Window): void {
  const ok = [win.x, win.y, win.width, win.height].every(Number.isInteger) && win.width > 0 && win.height > 0;
  if (!ok) throw new RangeError(`window ${JSON.stringify(win)} must have integer x, y and positive integer width, height`);
}

/** Copies `data` (the `clip` part of `win`) into its place in the window-sized `dst`. */
function pasteRows(data: ArrayLike<number>, clip: Window, win: Window, dst: Uint16Array): void {
  const src = data as Uint16Array;
  for (let j = 0; j < clip.height; j++) {
    const o = (clip.y - win.y + j) * win.width + (clip.x - win.x);
    dst.set(src.subarray(j * clip.width, (j + 1) * clip.width), o);
  }
}
