/**
 * Turning what a user typed (a .tif, a folder of band files, a STAC item, a SAFE folder, or an
 * http(s) URL to a .tif or STAC item) into a plain {@link SceneSource}. Nothing is decoded here;
 * openScene validates the rasters.
 */
import { existsSync } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { CloudMaskError } from '../shared/errors.ts';
import { BAND_NAMES, STAC_COMMON_NAMES, type BandName } from './bands.ts';
import { requestInit, type HttpOptions } from './http.ts';
import { readSafeMetadata, findSafeBands } from './safe.ts';
import { fetchFailure, httpStatusError, isTiffMagic, isUrl } from './tiff-file.ts';
import type { SceneMetadata, SceneSource } from './types.ts';

export interface ResolveOptions {
  /** fetch used for STAC item JSON over http(s) (tests inject one); the global fetch by default. */
  fetch?: typeof fetch;
  /** Headers sent with the STAC item request. */
  http?: HttpOptions;
}

const NO_METADATA: SceneMetadata = { processingBaseline: null, boaOffsetApplied: null, id: null };

export async function resolveSource(input: string, opts: ResolveOptions = {}): Promise<SceneSource> {
  if (isUrl(input)) {
    if (/\.tiff?([?#].*)?$/i.test(input)) return { kind: 'stacked', href: input };
    // .json, or an extension-less STAC API item URL: fromStacUrl tells a TIFF by its content type.
    return fromStacUrl(input, opts.fetch ?? fetch, opts.http);
  }
  if (/^s3:\/\//i.test(input)) throw new CloudMaskError('BAD_INPUT', `input ${input}: s3:// is not supported; use the bucket's https:// URL`);
  const abs = path.resolve(input);
  const st = await stat(abs).catch((err: NodeJS.ErrnoException) => {
    throw new CloudMaskError('INPUT_NOT_FOUND', `input ${abs} not found (${err.code ?? err.message})`, { cause: err });
  });
  if (st.isDirectory()) return fromFolder(abs);
  const head = await readHead(abs);
  if (head[0] === 0x7b /* { */ || /\.json$/i.test(abs)) return fromStacFile(abs);
  if (!isTiffMagic(head) && !/\.tiff?$/i.test(abs)) {
    throw new CloudMaskError('BAD_INPUT', `input ${abs} is neither a GeoTIFF nor a STAC item JSON`);
  }
  return { kind: 'stacked', href: abs };
}

async function readHead(file: string): Promise<Uint8Array> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(8);
    await fh.read(buf, 0, 8, 0);
    return buf;
  } finally {
    await fh.close();
  }
}

// ---- folders ---------------------------------------------------------------------------------

const BAND_FILE = /(?:^|[_-])(B0[1-9]|B1[0-2]|B8A)(?:_\d+m)?\.tiff?$/i;
const SCL_FILE = /(?:^|[_-])SCL(?:_\d+m)?\.tiff?$/i;

async function fromFolder(dir: string): Promise<SceneSource> {
  if (existsSync(path.join(dir, 'MTD_MSIL2A.xml'))) return fromSafe(dir);
  const names = (await readdir(dir)).sort();
  const safes = names.filter((n) => /\.SAFE$/i.test(n));
  const bandFiles = names.filter((n) => BAND_FILE.test(n));
  if (bandFiles.length === 0 && safes.length === 1) return fromSafe(path.join(dir, safes[0]!));
  const stacJson = await findStacItem(dir, names);
  if (bandFiles.length === 0 && stacJson) return fromStacFile(stacJson);
  const bands = BAND_NAMES.map((band) => pickFile(dir, band, names.filter((n) => BAND_FILE.exec(n)?.[1]?.toUpperCase() === band)));
  const scls = names.filter((n) => SCL_FILE.test(n));
  const scl = scls.length ? path.join(dir, preferExact(scls, 'SCL')) : null;
  const metadata = stacJson ? { ...stacMetadata(JSON.parse(await readFile(stacJson, 'utf8')) as StacItem), stacItem: stacJson } : NO_METADATA;
  return { kind: 'bands', bands, scl, metadata };
}

function pickFile(dir: string, band: BandName, candidates: string[]): string {
  if (candidates.length === 0) {
    throw new CloudMaskError('BAD_INPUT', `folder ${dir} has no file for band ${band} (expected ${band}.tif or *_${band}.tif)`);
  }
  const exact = candidates.filter((n) => n.replace(/\.tiff?$/i, '').toUpperCase() === band);
  if (exact.length === 1) return path.join(dir, exact[0]!);
  if (candidates.length > 1) {
    throw new CloudMaskError('BAD_INPUT', `folder ${dir} has several files for band ${band}: ${candidates.join(', ')}`);
  }
  return path.join(dir, candidates[0]!);
}

const preferExact = (names: string[], stem: string): string => names.find((n) => n.replace(/\.tiff?$/i, '').toUpperCase() === stem) ?? names[0]!;

/** The first *.json in the folder that looks like a STAC item with assets. */
async function findStacItem(dir: string, names: string[]): Promise<string | null> {
  for (const n of names.filter((x) => /\.json$/i.test(x))) {
    const p = path.join(dir, n);
    try {
      const j = JSON.parse(await readFile(p, 'utf8')) as StacItem;
      if (j && j.type === 'Feature' && j.assets && typeof j.assets === 'object') return p;
    } catch {
      // Not JSON we understand: not a STAC item.
    }
  }
  return null;
}

async function fromSafe(safeDir: string): Promise<SceneSource> {
  const metadata = await readSafeMetadata(safeDir);
  const { bands, scl, qualityMasks } = await findSafeBands(safeDir);
  return { kind: 'bands', bands, scl, metadata, qualityMasks };
}

// ---- STAC ------------------------------------------------------------------------------------

interface StacAsset {
  href?: unknown;
  'eo:bands'?: Array<{ name?: unknown }>;
}
/** The parts of a STAC item we read. */
export interface StacItem {
  type?: unknown;
  id?: unknown;
  properties?: Record<string, unknown>;
  assets?: Record<string, StacAsset>;
}

async function fromStacFile(file: string): Promise<SceneSource> {
  let item: StacItem;
  try {
    item = JSON.parse(await readFile(file, 'utf8')) as StacItem;
  } catch (err) {
    throw new CloudMaskError('BAD_INPUT', `STAC item ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const dir = path.dirname(file);
  return stacSource(item, file, (href) => {
    // A local item's assets usually point at the public bucket; a copy beside the JSON wins.
    const local = path.join(dir, path.posix.basename(href.replace(/[?#].*$/, '')));
    if (existsSync(local)) return local;
    if (isUrl(href)) return href;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(href)) return href; // s3:// etc: rejected below
    return path.resolve(dir, href);
  });
}

async function fromStacUrl(url: string, doFetch: typeof fetch, http: HttpOptions | undefined): Promise<SceneSource> {
  let res: Response;
  try {
    res = await doFetch(url, requestInit({}, http));
  } catch (err) {
    throw new CloudMaskError('TRANSIENT_IO', `STAC item ${url}: request failed (${fetchFailure(err)})`, { cause: err });
  }
  httpStatusError(res.status, 'STAC item', url);
  if (!/\.json([?#].*)?$/i.test(url) && !/json/i.test(res.headers.get('content-type') ?? '')) {
    await res.body?.cancel();
    return { kind: 'stacked', href: url };
  }
  let item: StacItem;
  try {
    item = (await res.json()) as StacItem;
  } catch (err) {
    throw new CloudMaskError('BAD_INPUT', `STAC item ${url} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return stacSource(item, url, (href) => new URL(href, url).toString());
}

function stacSource(item: StacItem, where: string, resolveHref: (href: string) => string): SceneSource {
  if (!item || typeof item !== 'object' || !item.assets || typeof item.assets !== 'object') {
    throw new CloudMaskError('BAD_INPUT', `STAC item ${where} has no assets`);
  }
  const assets = item.assets;
  const hrefOf = (key: string | null, label: string): string | null => {
    if (key === null) return null;
    const href = assets[key]!.href;
    if (typeof href !== 'string' || href === '') throw new CloudMaskError('BAD_INPUT', `STAC item ${where}: asset ${key} (${label}) has no href`);
    const resolved = resolveHref(href);
    if (!isUrl(resolved) && /^[a-z][a-z0-9+.-]*:\/\//i.test(resolved)) {
      throw new CloudMaskError('BAD_INPUT', `STAC item ${where}: asset ${key} (${label}) href ${href} is not http(s) or a local file`);
    }
    return resolved;
  };
  const bands = BAND_NAMES.map((band) => {
    const key = findAsset(assets, band);
    if (!key) throw new CloudMaskError('BAD_INPUT', `STAC item ${where} has no asset for band ${band} (looked for "${STAC_COMMON_NAMES[band]}" or "${band}")`);
    return hrefOf(key, band)!;
  });
  const sclKey = ['scl', 'SCL'].find((k) => k in assets) ?? null;
  const classi = hrefOf(findMaskAsset(assets, /^(msk[_-]?)?classi(_b00)?$/i, /MSK_CLASSI_B00\.(tiff?|jp2)$/i), 'MSK_CLASSI_B00');
  const cloudsGml = hrefOf(findMaskAsset(assets, /^msk[_-]?clouds(_b00)?(_gml)?$/i, /MSK_CLOUDS_B00\.gml$/i), 'MSK_CLOUDS_B00.gml');
  const source: SceneSource = { kind: 'bands', bands, scl: hrefOf(sclKey, 'SCL'), metadata: { ...stacMetadata(item), stacItem: where } };
  return classi || cloudsGml ? { ...source, qualityMasks: { classi, cloudsGml } } : source;
}

/**
 * The asset holding one of the product's cloud masks: no provider names these alike, so a key
 * such as "MSK_CLASSI" / "msk_clouds", or an href ending in the ESA file name, both count.
 */
function findMaskAsset(assets: Record<string, StacAsset>, key: RegExp, file: RegExp): string | null {
  const byKey = Object.keys(assets).find((k) => key.test(k));
  if (byKey) return byKey;
  return Object.keys(assets).find((k) => typeof assets[k]!.href === 'string' && file.test((assets[k]!.href as string).replace(/[?#].*$/, ''))) ?? null;
}

/** Asset key for a band: Earth Search common name, then "B02"/"b02", then eo:bands name. */
function findAsset(assets: Record<string, StacAsset>, band: BandName): string | null {
  for (const key of [STAC_COMMON_NAMES[band], band, band.toLowerCase()]) if (key in assets) return key;
  const byEo = Object.keys(assets).find((k) => !/jp2/i.test(k) && assets[k]!['eo:bands']?.some((b) => b.name === band));
  return byEo ?? null;
}

export function stacMetadata(item: StacItem): SceneMetadata {
  const p = item.properties ?? {};
  const baseline = typeof p['s2:processing_baseline'] === 'string' ? p['s2:processing_baseline'] : baselineFromName(p['s2:product_uri']);
  const applied = p['earthsearch:boa_offset_applied'];
  return {
    processingBaseline: baseline,
    boaOffsetApplied: typeof applied === 'boolean' ? applied : null,
    id: typeof item.id === 'string' ? item.id : null,
    datetime: typeof p.datetime === 'string' ? p.datetime : typeof p.start_datetime === 'string' ? p.start_datetime : null,
  };
}

/** "S2A_MSIL2A_..._N0214_..." -> "02.14". */
export function baselineFromName(name: unknown): string | null {
  const m = typeof name === 'string' ? /_N(\d{2})(\d{2})_/.exec(name) : null;
  return m ? `${m[1]}.${m[2]}` : null;
}

/** The bands a STAC item has no asset for (empty when it can be read as a scene). */
export function missingStacBands(item: StacItem): BandName[] {
  const assets = item && typeof item.assets === 'object' && item.assets ? item.assets : {};
  return BAND_NAMES.filter((band) => findAsset(assets, band) === null);
}
