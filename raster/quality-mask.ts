/**
 * The product's own cloud mask from its quality indicators, on the scene's 10 m grid:
 * MSK_CLASSI_B00 (processing baseline >= 04.00) or the polygons of MSK_CLOUDS_B00.gml (older
 * products). Which bits count as cloud: opaque clouds and cirrus; snow/ice never does.
 */
import { readFile } from 'node:fs/promises';
import { CloudMaskError } from '../shared/errors.ts';
import { packMask, type PackedMask } from '../shared/packed-mask.ts';
import { requestInit, type HttpOptions } from './http.ts';
import { parseMaskGml, rasterizeCloudGml } from './msk-gml.ts';
import { resampleNearestPacked } from './resample.ts';
import { gridRatio } from './scene-reader.ts';
import { closeTiff, fetchFailure, geoInfoOf, httpStatusError, isUrl, openTiff, readSamples } from './tiff-file.ts';
import type { GeoInfo, QualityMasks, SceneMetadata } from './types.ts';

/** Which of the product's masks a scene's own mask came from. */
export type QualitySource = 'MSK_CLASSI_B00' | 'MSK_CLOUDS_B00.gml';

/**
 * MSK_CLASSI_B00 band layout (ESA's L2A product format, baseline 04.00): band 1 opaque clouds,
 * band 2 cirrus, band 3 snow/ice, each 1 where set. A single-band file is read as the same three
 * flags packed in bits 0, 1, 2.
 */
export const CLASSI_CLOUD_BANDS = [0, 1] as const;
export const CLASSI_CLOUD_BITS = 0b011;

/** The masks to try, in the order the product's baseline says they were made (MSK_CLASSI first when unknown). */
export function qualityOrder(masks: QualityMasks, meta: SceneMetadata): Array<{ source: QualitySource; href: string }> {
  const v = meta.processingBaseline === null ? NaN : Number.parseFloat(meta.processingBaseline);
  const classi = masks.classi ? [{ source: 'MSK_CLASSI_B00' as const, href: masks.classi }] : [];
  const gml = masks.cloudsGml ? [{ source: 'MSK_CLOUDS_B00.gml' as const, href: masks.cloudsGml }] : [];
  return Number.isFinite(v) && v < 4 ? [...gml, ...classi] : [...classi, ...gml];
}

export async function readQualityMask(source: QualitySource, href: string, geo: GeoInfo, http?: HttpOptions): Promise<PackedMask> {
  return source === 'MSK_CLASSI_B00' ? readClassi(href, geo, http) : packMask(await readCloudsGml(href, geo, http), geo.width, geo.height);
}

/** Opaque or cirrus set -> 1, nearest-resampled from the mask's grid (60 m) to the scene grid. */
async function readClassi(href: string, geo: GeoInfo, http?: HttpOptions): Promise<PackedMask> {
  if (/\.jp2([?#].*)?$/i.test(href)) {
    throw new CloudMaskError('BAD_INPUT', `MSK_CLASSI_B00 ${href} is JPEG 2000, which cannot be decoded here; convert it to GeoTIFF (gdal_translate) or pass --product-mask scl`);
  }
  const file = await openTiff(href, 'MSK_CLASSI_B00', http);
  try {
    if (!/^uint/.test(file.sampleType)) throw new CloudMaskError('BAD_INPUT', `MSK_CLASSI_B00 ${href} holds ${file.sampleType} pixels, expected unsigned integers`);
    const ratio = gridRatio(geo, await geoInfoOf(file), file);
    const all = { x: 0, y: 0, width: file.width, height: file.height };
    const cloud = new Uint8Array(file.width * file.height);
    if (file.samples === 1) {
      const [v] = await readSamples(file, all, [0]);
      for (let i = 0; i < cloud.length; i++) cloud[i] = v![i]! & CLASSI_CLOUD_BITS ? 1 : 0;
    } else {
      const [opaque, cirrus] = await readSamples(file, all, [...CLASSI_CLOUD_BANDS]);
      for (let i = 0; i < cloud.length; i++) cloud[i] = opaque![i] !== 0 || cirrus![i] !== 0 ? 1 : 0;
    }
    return resampleNearestPacked(cloud, file.width, file.height, ratio, geo.width, geo.height);
  } finally {
    await closeTiff(file.tiff);
  }
}

/** OPAQUE and CIRRUS polygons burned straight into the scene grid (GDAL's pixel-centre rule). */
async function readCloudsGml(href: string, geo: GeoInfo, http?: HttpOptions): Promise<Uint8Array> {
  const gml = parseMaskGml(await readText(href, http), `MSK_CLOUDS_B00.gml ${href}`);
  if (gml.epsg !== null && geo.epsg !== null && gml.epsg !== geo.epsg) {
    throw new CloudMaskError('GRID_MISMATCH', `MSK_CLOUDS_B00.gml ${href} is in EPSG:${gml.epsg} but the scene is in EPSG:${geo.epsg}`);
  }
  return rasterizeCloudGml(gml, geo);
}

async function readText(href: string, http?: HttpOptions): Promise<string> {
  if (!isUrl(href)) {
    return readFile(href, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new CloudMaskError('INPUT_NOT_FOUND', `MSK_CLOUDS_B00.gml ${href} not found (${err.code ?? err.message})`, { cause: err });
    });
  }
  let res: Response;
  try {
    res = await fetch(href, requestInit({ signal: AbortSignal.timeout(30_000) }, http));
  } catch (err) {
    throw new CloudMaskError('TRANSIENT_IO', `MSK_CLOUDS_B00.gml ${href}: request failed (${fetchFailure(err)})`, { cause: err });
  }
  httpStatusError(res.status, 'MSK_CLOUDS_B00.gml', href);
  return res.text();
}
