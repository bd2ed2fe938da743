/**
 * The product mask, merged into the output as FarmVibes merges its product_mask (any nonzero =
 * cloud): the product's own (quality-mask.ts), SCL, or a file; and detection of the
 * baseline-04.00 DN offset.
 */
import { setImmediate } from 'node:timers/promises';
import { CloudMaskError } from '../shared/errors.ts';
import { emptyPacked, packMask, unpackMask, type PackedMask } from '../shared/packed-mask.ts';
import { SCL_CLOUD_CLASSES } from './bands.ts';
import type { HttpOptions } from './http.ts';
import { qualityOrder, readQualityMask, type QualitySource } from './quality-mask.ts';
import { resampleNearestPacked } from './resample.ts';
import { gridRatio } from './scene-reader.ts';
import { closeTiff, geoInfoOf, openTiff, probeAhead, readSamples, type TiffFile } from './tiff-file.ts';
import type { GeoInfo, SceneMetadata, SceneReader, SceneSource } from './types.ts';

export { readSafeMetadata } from './safe.ts';

/** Where a scene's product mask came from (the run report names it). */
export type ProductMaskSource = 'none' | 'file' | 'SCL' | QualitySource;

export interface ProductMask {
  /** One bit per scene pixel (set: cloud), or null for 'none'. */
  bits: PackedMask | null;
  source: ProductMaskSource;
  /** The file read (null for 'none'). */
  href: string | null;
}

export interface ProductMaskOptions {
  /** Headers for http(s) mask files. */
  http?: HttpOptions;
  /** Told when 'product' falls back to SCL (the input carries no quality masks). */
  warn?: (message: string) => void;
  /**
   * Called when a large mask (SCL, a mask file) is open and its grid and type are checked, before
   * its pixels are read: a scene may start its chips then, with the read running beside them.
   */
  checked?: () => void;
}

/**
 * 'none' -> null; 'product' -> the product's own mask (MSK_CLASSI_B00 or MSK_CLOUDS_B00.gml, see
 * quality-mask.ts), SCL with a warning where the input carries neither; 'scl' -> SCL classes
 * 3, 8, 9, 10 as 1, nearest-resampled to the scene grid; anything else is a path or URL of a
 * single-band integer GeoTIFF on the scene grid whose nonzero pixels are cloud.
 */
export async function loadProductMask(spec: string, scene: SceneReader, opts: ProductMaskOptions = {}): Promise<ProductMask> {
  if (spec === 'none') return { bits: null, source: 'none', href: null };
  if (spec === 'product') return readOwnMask(scene, opts);
  if (spec === 'scl') return readSclMask(scene, opts);
  return { bits: packMask(await readMaskFile(spec, scene.geo, opts), scene.geo.width, scene.geo.height), source: 'file', href: spec };
}

/**
 * Starts opening the file {@link loadProductMask} will read for `spec` and `source` when it is a
 * URL (its first request), so that it goes out beside the scene's own (one round trip less before
 * the first chip). The quality masks of 'product' depend on the scene's metadata: left alone.
 */
export function openProductMaskAhead(spec: string, source: SceneSource, http?: HttpOptions): void {
  if (spec === 'scl' && source.kind === 'bands' && source.scl) probeAhead(source.scl, SCL_LABEL, http);
  else if (spec !== 'none' && spec !== 'product' && spec !== 'scl') probeAhead(spec, MASK_FILE_LABEL, http);
}

const SCL_LABEL = 'SCL band';
const MASK_FILE_LABEL = 'product mask';

/** {@link loadProductMask}'s mask alone, a byte (0/1) per pixel. */
export async function readProductMask(spec: string, scene: SceneReader, opts: ProductMaskOptions = {}): Promise<Uint8Array | null> {
  const { bits } = await loadProductMask(spec, scene, opts);
  return bits && unpackMask(bits);
}

async function readOwnMask(scene: SceneReader, opts: ProductMaskOptions): Promise<ProductMask> {
  const { source } = scene;
  const masks = source.kind === 'bands' ? source.qualityMasks : undefined;
  const candidates = masks ? qualityOrder(masks, scene.metadata) : [];
  if (candidates.length > 0) {
    const { source: which, href } = candidates[0]!;
    return { bits: await readQualityMask(which, href, scene.geo, opts.http), source: which, href };
  }
  const name = scene.metadata.id ?? (source.kind === 'stacked' ? source.href : source.bands[1]);
  const scl = source.kind === 'bands' ? source.scl : null;
  if (!scl) {
    throw new CloudMaskError('BAD_INPUT', `product mask 'product': ${name} carries no quality masks (MSK_CLASSI_B00, MSK_CLOUDS_B00.gml) and no SCL band; pass --product-mask none or a mask file`);
  }
  opts.warn?.(`product mask: ${name} carries no MSK_CLASSI_B00 or MSK_CLOUDS_B00.gml; using its SCL classes 3, 8, 9, 10 instead`);
  return readSclMask(scene, opts);
}

async function readSclMask(scene: SceneReader, { http, checked }: ProductMaskOptions): Promise<ProductMask> {
  const { source, geo } = scene;
  const href = source.kind === 'bands' ? source.scl : null;
  if (!href) {
    const what = source.kind === 'stacked' ? `stacked scene ${source.href} carries no SCL band` : `scene ${scene.metadata.id ?? source.bands[1]} has no SCL file`;
    throw new CloudMaskError('BAD_INPUT', `product mask 'scl' needs the SCL band: ${what}; use --product-mask none or a mask file`);
  }
  const bits = await withTiff(href, SCL_LABEL, http, async (file) => {
    checkInteger(file);
    const ratio = gridRatio(geo, await geoInfoOf(file), file);
    checked?.();
    // In steps of about a source tile, the event loop running between them: on a full tile the
    // whole takes about 0.6 s of the coordinator's thread, as the first chips come back; in one
    // piece it held the results and the next jobs (an embedded run hands them to the chip
    // threads from this thread) and the chip threads ran out of work for about 0.3 s.
    const tw = file.image.getTileWidth();
    const th = file.image.getTileHeight();
    const stepWidth = Math.min(file.width, tw * Math.max(1, Math.ceil(STEP_SIDE / tw)));
    const stepHeight = th * Math.max(1, Math.ceil(STEP_SIDE / th));
    const cloud = new Uint8Array(file.width * file.height);
    for (let y = 0; y < file.height; y += stepHeight) {
      for (let x = 0; x < file.width; x += stepWidth) {
        const win = { x, y, width: Math.min(stepWidth, file.width - x), height: Math.min(stepHeight, file.height - y) };
        const [classes] = await readSamples(file, win, [0]);
        sclCloud(classes!, cloud, win, file.width);
        await setImmediate();
      }
    }
    const into = emptyPacked(geo.width, geo.height);
    const rows = Math.max(1, Math.floor((STEP_SIDE * STEP_SIDE) / geo.width));
    for (let y = 0; y < geo.height; y += rows) {
      resampleNearestPacked(cloud, file.width, file.height, ratio, geo.width, geo.height, { from: y, to: Math.min(geo.height, y + rows), into });
      await setImmediate();
    }
    return into;
  });
  return { bits, source: 'SCL', href };
}

const SCL_LUT = new Uint8Array(256);
SCL_CLOUD_CLASSES.forEach((c) => (SCL_LUT[c] = 1));

/** The side of a step of the product mask's pixel work, about: a few milliseconds of this thread. */
const STEP_SIDE = 1024;

/**
 * 1 in window `win` of `cloud` (an image `width` wide) where an SCL class of the window's
 * `classes` counts as cloud. SCL is uint8 as ESA writes it: that loop sees one array type.
 */
function sclCloud(classes: ArrayLike<number>, cloud: Uint8Array, win: { x: number; y: number; width: number; height: number }, width: number): void {
  for (let r = 0; r < win.height; r++) {
    const o = (win.y + r) * width + win.x;
    const s = r * win.width;
    if (classes instanceof Uint8Array) {
      for (let i = 0; i < win.width; i++) cloud[o + i] = SCL_LUT[classes[s + i]];
    } else {
      for (let i = 0; i < win.width; i++) cloud[o + i] = classes[s + i] < 256 ? SCL_LUT[classes[s + i]] : 0;
    }
  }
}

async function readMaskFile(href: string, geo: GeoInfo, { http, checked }: ProductMaskOptions): Promise<Uint8Array> {
  return withTiff(href, MASK_FILE_LABEL, http, async (file) => {
    if (file.samples !== 1) throw new CloudMaskError('BAD_INPUT', `product mask ${href} has ${file.samples} bands, expected 1 band`);
    checkInteger(file);
    const maskGeo = await geoInfoOf(file);
    if (!sameGrid(geo, maskGeo)) {
      throw new CloudMaskError('GRID_MISMATCH', `product mask ${href} is on grid ${describeGrid(maskGeo)} but the scene is on ${describeGrid(geo)}`);
    }
    checked?.();
    const [values] = await readSamples(file, { x: 0, y: 0, width: file.width, height: file.height }, [0]);
    const mask = new Uint8Array(values!.length);
    for (let i = 0; i < mask.length; i++) mask[i] = values![i] !== 0 ? 1 : 0;
    return mask;
  });
}

async function withTiff<T>(href: string, label: string, http: HttpOptions | undefined, fn: (file: TiffFile) => Promise<T>): Promise<T> {
  const file = await openTiff(href, label, http);
  try {
    return await fn(file);
  } finally {
    await closeTiff(file.tiff);
  }
}

function checkInteger(file: TiffFile): void {
  if (!/^u?int/.test(file.sampleType)) {
    throw new CloudMaskError('BAD_INPUT', `${file.label} ${file.href} holds ${file.sampleType} pixels, expected an integer type (uint8)`);
  }
}

/** Same size, origin, pixel size (to 1e-6 of a pixel) and CRS (when both declare one). */
export function sameGrid(a: GeoInfo, b: GeoInfo): boolean {
  const close = (x: number, y: number, unit: number): boolean => Math.abs(x - y) <= unit * 1e-6;
  const px = a.pixelSize[0];
  return (
    a.width === b.width &&
    a.height === b.height &&
    close(a.pixelSize[0], b.pixelSize[0], px) &&
    close(a.pixelSize[1], b.pixelSize[1], px) &&
    close(a.origin[0], b.origin[0], px) &&
    close(a.origin[1], b.origin[1], px) &&
    (a.epsg === null || b.epsg === null || a.epsg === b.epsg)
  );
}

export function describeGrid(g: GeoInfo): string {
  const crs = g.epsg === null ? 'unknown CRS' : `EPSG:${g.epsg}`;
  return `${g.width}x${g.height}, origin (${g.origin[0]}, ${g.origin[1]}), pixel ${g.pixelSize[0]}x${g.pixelSize[1]}, ${crs}`;
}

/**
 * Whether the DN carry the +1000 offset of processing baseline 04.00 and later: yes unless the
 * provider says it already removed it (Earth Search's boa_offset_applied). Unknown baseline: no.
 */
export function offsetStatus(meta: SceneMetadata): { baseline: string | null; offsetInData: boolean } {
  const baseline = meta.processingBaseline;
  const v = baseline === null ? NaN : Number.parseFloat(baseline);
  return { baseline, offsetInData: Number.isFinite(v) && v >= 4 && meta.boaOffsetApplied !== true };
}
