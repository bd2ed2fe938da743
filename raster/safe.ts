/**
 * Sentinel-2 L2A SAFE folders: product metadata from MTD_MSIL2A.xml (read with regexes, no XML
 * dependency) and the band files under GRANULE/x/IMG_DATA/R10m|R20m|R60m (GeoTIFF only:
 * geotiff.js cannot decode the JPEG 2000 ESA ships, so such SAFEs need a gdal_translate first).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { CloudMaskError } from '../shared/errors.ts';
import { BAND_NAMES, type BandName } from './bands.ts';
import type { QualityMasks, SceneMetadata } from './types.ts';

/** Native resolution of each band in a SAFE; others are tried when it is missing. */
const NATIVE: Record<BandName, string> = {
  B01: 'R60m', B02: 'R10m', B03: 'R10m', B04: 'R10m', B05: 'R20m', B06: 'R20m',
  B07: 'R20m', B08: 'R10m', B8A: 'R20m', B09: 'R60m', B11: 'R20m', B12: 'R20m',
};
const RESOLUTIONS = ['R10m', 'R20m', 'R60m'];

/** Reads MTD_MSIL2A.xml of a SAFE folder (or the XML file itself). */
export async function readSafeMetadata(safeDir: string): Promise<SceneMetadata> {
  const file = /\.xml$/i.test(safeDir) ? safeDir : path.join(safeDir, 'MTD_MSIL2A.xml');
  let xml: string;
  try {
    xml = await readFile(file, 'utf8');
  } catch (err) {
    throw new CloudMaskError('INPUT_NOT_FOUND', `SAFE metadata ${file} not found (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  return parseSafeMetadata(xml);
}

/** The metadata in an MTD_MSIL2A.xml text. ESA data never has the offset removed. */
export function parseSafeMetadata(xml: string): SceneMetadata {
  const tag = (name: string): string | null => new RegExp(`<${name}(?:\\s[^>]*)?>\\s*([^<]*?)\\s*</${name}>`).exec(xml)?.[1] ?? null;
  const uri = tag('PRODUCT_URI');
  const offsets = [...xml.matchAll(/<BOA_ADD_OFFSET(?:\s[^>]*)?>\s*(-?\d+)\s*<\/BOA_ADD_OFFSET>/g)].map((m) => Number(m[1]));
  const baseline = tag('PROCESSING_BASELINE');
  return {
    processingBaseline: baseline,
    // The SAFE holds DN as ESA wrote them: an offset, when listed, is still in the data.
    boaOffsetApplied: offsets.length > 0 || baseline !== null ? false : null,
    id: uri ? uri.replace(/\.SAFE$/i, '') : null,
    datetime: tag('PRODUCT_START_TIME'),
  };
}

/** Band and SCL GeoTIFFs of a SAFE, in band order, and the cloud masks in its QI_DATA. */
export async function findSafeBands(safeDir: string): Promise<{ bands: string[]; scl: string | null; qualityMasks: QualityMasks }> {
  const granuleRoot = path.join(safeDir, 'GRANULE');
  const granules = await readdir(granuleRoot).catch(() => [] as string[]);
  if (granules.length !== 1) {
    throw new CloudMaskError('BAD_INPUT', `SAFE ${safeDir} must hold exactly one granule under GRANULE/ (found ${granules.length})`);
  }
  const imgData = path.join(granuleRoot, granules[0]!, 'IMG_DATA');
  const files = new Map<string, string[]>();
  for (const res of RESOLUTIONS) {
    const dir = path.join(imgData, res);
    const names = await stat(dir).then(() => readdir(dir), () => [] as string[]);
    files.set(res, names.map((n) => path.join(dir, n)));
  }
  const find = (stem: string, order: string[]): { tif: string | null; jp2: boolean } => {
    let jp2 = false;
    for (const res of order) {
      for (const f of files.get(res) ?? []) {
        const m = new RegExp(`_${stem}_\\d+m\\.(tiff?|jp2)$`, 'i').exec(f);
        if (m && m[1]!.toLowerCase() === 'jp2') jp2 = true;
        else if (m) return { tif: f, jp2 };
      }
    }
    return { tif: null, jp2 };
  };
  const bands = BAND_NAMES.map((band) => {
    const { tif, jp2 } = find(band, [NATIVE[band], ...RESOLUTIONS.filter((r) => r !== NATIVE[band])]);
    if (tif) return tif;
    const why = jp2 ? 'only JPEG 2000 is present; convert it to GeoTIFF (gdal_translate) first' : 'no file found';
    throw new CloudMaskError('BAD_INPUT', `SAFE ${safeDir}: band ${band} missing under IMG_DATA/R10m|R20m|R60m (${why})`);
  });
  const qualityMasks = await findQualityMasks(path.join(granuleRoot, granules[0]!, 'QI_DATA'));
  return { bands, scl: find('SCL', ['R20m', 'R60m', 'R10m']).tif, qualityMasks };
}

/**
 * MSK_CLASSI_B00 (GeoTIFF preferred; a .jp2 is kept so that reading it can say why it fails) and
 * MSK_CLOUDS_B00.gml in a granule's QI_DATA; null for what is absent.
 */
async function findQualityMasks(qiData: string): Promise<QualityMasks> {
  const names = await readdir(qiData).catch(() => [] as string[]);
  const pick = (re: RegExp): string | null => {
    const hits = names.filter((n) => re.test(n)).sort((a, b) => Number(/\.jp2$/i.test(a)) - Number(/\.jp2$/i.test(b)));
    return hits.length ? path.join(qiData, hits[0]!) : null;
  };
  return { classi: pick(/^MSK_CLASSI_B00\.(tiff?|jp2)$/i), cloudsGml: pick(/^MSK_CLOUDS_B00\.gml$/i) };
}
