/**
 * The product's own cloud mask, merged into the output as FarmVibes merges its product_mask
 * (any nonzero = cloud), and detection of the baseline-04.00 DN offset.
 */
import { CloudMaskError } from '../shared/errors.ts';
import { SCL_CLOUD_CLASSES } from './bands.ts';
import { resampleNearest } from './resample.ts';
import { gridRatio } from './scene-reader.ts';
import { closeTiff, geoInfoOf, openTiff, readSamples, type TiffFile } from './tiff-file.ts';
import type { GeoInfo, SceneMetadata, SceneReader } from './types.ts';

export { readSafeMetadata } from './safe.ts';

/**
 * 'none' -> null; 'scl' -> SCL classes 3, 8, 9, 10 as 1, nearest-resampled to the scene grid;
 * anything else is a path or URL of a single-band integer GeoTIFF on the scene grid whose
 * nonzero pixels are cloud. Returns 0/1 per scene pixel.
 */
export async function readProductMask(spec: string, scene: SceneReader): Promise<Uint8Array | null> {
  if (spec === 'none') return null;
  if (spec === 'scl') return readSclMask(scene);
  return readMaskFile(spec, scene.geo);
}

async function readSclMask(scene: SceneReader): Promise<Uint8Array> {
  const { source, geo } = scene;
  const href = source.kind === 'bands' ? source.scl : null;
  if (!href) {
    const what = source.kind === 'stacked' ? `stacked scene ${source.href} carries no SCL band` : `scene ${scene.metadata.id ?? source.bands[1]} has no SCL file`;
    throw new CloudMaskError('BAD_INPUT', `product mask 'scl' needs the SCL band: ${what}; use --product-mask none or a mask file`);
  }
  return withTiff(href, 'SCL band', async (file) => {
    checkInteger(file);
    const ratio = gridRatio(geo, await geoInfoOf(file), file);
    const [classes] = await readSamples(file, { x: 0, y: 0, width: file.width, height: file.height }, [0]);
    const lut = new Uint8Array(256);
    SCL_CLOUD_CLASSES.forEach((c) => (lut[c] = 1));
    const cloud = new Uint8Array(classes!.length);
    for (let i = 0; i < cloud.length; i++) cloud[i] = classes![i]! < 256 ? lut[classes![i]!]! : 0;
    if (ratio === 1) return cloud;
    const block = { data: cloud, x: 0, y: 0, width: file.width, height: file.height };
    return resampleNearest(block, file.width, file.height, ratio, { x: 0, y: 0, width: geo.width, height: geo.height }, new Uint8Array(geo.width * geo.height));
  });
}

async function readMaskFile(href: string, geo: GeoInfo): Promise<Uint8Array> {
  return withTiff(href, 'product mask', async (file) => {
    if (file.samples !== 1) throw new CloudMaskError('BAD_INPUT', `product mask ${href} has ${file.samples} bands, expected 1 band`);
    checkInteger(file);
    const maskGeo = await geoInfoOf(file);
    if (!sameGrid(geo, maskGeo)) {
      throw new CloudMaskError('GRID_MISMATCH', `product mask ${href} is on grid ${describeGrid(maskGeo)} but the scene is on ${describeGrid(geo)}`);
    }
    const [values] = await readSamples(file, { x: 0, y: 0, width: file.width, height: file.height }, [0]);
    const mask = new Uint8Array(values!.length);
    for (let i = 0; i < mask.length; i++) mask[i] = values![i] !== 0 ? 1 : 0;
    return mask;
  });
}

async function withTiff<T>(href: string, label: string, fn: (file: TiffFile) => Promise<T>): Promise<T> {
  const file = await openTiff(href, label);
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
