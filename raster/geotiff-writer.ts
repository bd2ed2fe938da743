/**
 * A small GeoTIFF writer: tiled, DEFLATE (node:zlib), little-endian classic TIFF, band-separate
 * planes, georeferencing copied from a GeoInfo, written to a temporary file and renamed into
 * place. geotiff.js can write neither tiles nor compression, hence this module.
 *
 * Layout: header, the IFD (its size is known before any tile is compressed), then the tiles in
 * order (band, tile row, tile column); the IFD is rewritten with the real offsets at the end.
 * Tiles are compressed on the libuv thread pool a few at a time and written as they finish, so
 * memory stays at a few tiles whatever the raster size.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { deflate as deflateCb } from 'node:zlib';
import { CloudMaskError, fsReason } from '../shared/errors.ts';
import { closeTiff, openTiff } from './tiff-file.ts';
import { encodeIfd, ifdLength, TIFF_ASCII, TIFF_DOUBLE, TIFF_LONG, TIFF_SHORT, type IfdEntry } from './tiff-ifd.ts';
import type { GeoInfo } from './types.ts';

const deflate = promisify(deflateCb);

export interface WriteOptions {
  width: number;
  height: number;
  /** Number of bands in `data`; default 1. */
  bands?: number;
  /** Band-major pixels [bands][height][width]. */
  data: Uint8Array | Uint16Array | Float32Array;
  geo: GeoInfo;
  /** Tile width and height in pixels, a multiple of 16; default 512. */
  tileSize?: number;
  /** GDAL_NODATA tag; also fills partial edge tiles. Default null (no tag, edges filled with 0). */
  nodata?: number | null;
  /** GDAL_METADATA items (tag 42112). */
  metadata?: Record<string, string>;
  /**
   * 2 = horizontal differencing (integer data only). Default 2 for uint16 (DN compress much
   * better), 1 for uint8 (masks compress better and faster without) and float32.
   */
  predictor?: 1 | 2;
  /** zlib level 1..9; default 6. */
  level?: number;
}

/** Tiles compressing at once: enough to keep both libuv pool threads and the disk busy. */
const IN_FLIGHT = 4;
const MAX_CLASSIC = 2 ** 32 - 1;

/** Writes `opts` as a GeoTIFF at `path`, atomically: on failure nothing is left at `path`. */
export async function writeGeoTiff(path: string, opts: WriteOptions): Promise<void> {
  const layout = planLayout(opts);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fh: FileHandle | null = null;
  try {
    fh = await open(tmp, 'wx');
    await writeBody(fh, opts, layout);
    await fh.datasync();
    await fh.close();
    fh = null;
    await rename(tmp, path);
  } catch (err) {
    if (fh) await fh.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    if (err instanceof CloudMaskError) throw err;
    throw new CloudMaskError('OUTPUT_FAILED', `cannot write GeoTIFF ${path}: ${fsReason(err)}`, { cause: err });
  }
}

interface Layout {
  bands: number;
  tile: number;
  tilesX: number;
  tilesY: number;
  bytesPerSample: number;
  sampleFormat: number;
  predictor: 1 | 2;
  fill: number;
}

function planLayout(o: WriteOptions): Layout {
  const bands = o.bands ?? 1;
  const tile = o.tileSize ?? 512;
  const bad = (why: string): RangeError => new RangeError(`writeGeoTiff: ${why}`);
  if (!Number.isInteger(o.width) || o.width < 1 || !Number.isInteger(o.height) || o.height < 1) throw bad(`size ${o.width}x${o.height} must be positive integers`);
  if (!Number.isInteger(bands) || bands < 1 || bands > 65535) throw bad(`bands ${bands} must be a positive integer`);
  if (!Number.isInteger(tile) || tile < 16 || tile % 16 !== 0) throw bad(`tileSize ${tile} must be a positive multiple of 16`);
  if (o.data.length !== o.width * o.height * bands) throw bad(`data has ${o.data.length} values, expected ${bands}x${o.height}x${o.width}`);
  const isFloat = o.data instanceof Float32Array;
  const predictor = o.predictor ?? (o.data instanceof Uint16Array ? 2 : 1);
  if (isFloat && predictor === 2) throw bad('predictor 2 needs integer data');
  return {
    bands,
    tile,
    tilesX: Math.ceil(o.width / tile),
    tilesY: Math.ceil(o.height / tile),
    bytesPerSample: o.data.BYTES_PER_ELEMENT,
    sampleFormat: isFloat ? 3 : 1,
    predictor,
    fill: o.nodata ?? 0,
  };
}

async function writeBody(fh: FileHandle, o: WriteOptions, l: Layout): Promise<void> {
  const count = l.tilesX * l.tilesY * l.bands;
  const offsets = new Array<number>(count).fill(0);
  const counts = new Array<number>(count).fill(0);
  const ifdAt = 8;
  const dataAt = ifdAt + ifdLength(ifdEntries(o, l, offsets, counts));
  const header = Buffer.from([0x49, 0x49, 42, 0, ifdAt, 0, 0, 0]);
  await fh.write(header, 0, 8, 0);

  let pos = dataAt;
  const pending: Promise<Buffer>[] = [];
  let next = 0;
  const launch = (): void => {
    if (next >= count) return;
    const p = deflate(tileBytes(o, l, next++), { level: o.level ?? 6 });
    p.catch(() => {}); // awaited in order below; this only keeps an early failure from going unhandled
    pending.push(p);
  };
  for (let i = 0; i < IN_FLIGHT; i++) launch();
  for (let i = 0; i < count; i++) {
    const z = await pending.shift()!;
    launch();
    if (pos + z.length > MAX_CLASSIC) throw new CloudMaskError('OUTPUT_FAILED', `GeoTIFF would exceed 4 GB (BigTIFF is not supported)`);
    await fh.write(z, 0, z.length, pos);
    offsets[i] = pos;
    counts[i] = z.length;
    pos += z.length;
  }
  const ifd = encodeIfd(ifdEntries(o, l, offsets, counts), ifdAt);
  await fh.write(ifd, 0, ifd.length, ifdAt);
}

/** Tile `index` (band-major, then rows, then columns) as raw bytes, predictor applied. */
function tileBytes(o: WriteOptions, l: Layout, index: number): Uint8Array {
  const perBand = l.tilesX * l.tilesY;
  const band = Math.floor(index / perBand);
  const tx = index % l.tilesX;
  const ty = Math.floor((index % perBand) / l.tilesX);
  const Ctor = o.data.constructor as Uint8ArrayConstructor | Uint16ArrayConstructor | Float32ArrayConstructor;
  const t = l.tile;
  const out = new Ctor(t * t);
  const x0 = tx * t;
  const y0 = ty * t;
  const w = Math.min(t, o.width - x0);
  const h = Math.min(t, o.height - y0);
  if (w < t || h < t) out.fill(l.fill);
  const bandOff = band * o.width * o.height;
  for (let j = 0; j < h; j++) {
    const s = bandOff + (y0 + j) * o.width + x0;
    out.set(o.data.subarray(s, s + w), j * t);
  }
  if (l.predictor === 2) horizontalDifference(out as Uint8Array | Uint16Array, t);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** TIFF predictor 2 on a tile: each sample minus its left neighbour, per row, wrapping. */
function horizontalDifference(a: Uint8Array | Uint16Array, t: number): void {
  for (let r = 0; r < t; r++) {
    const o = r * t;
    for (let i = t - 1; i > 0; i--) a[o + i] = a[o + i]! - a[o + i - 1]!;
  }
}

function ifdEntries(o: WriteOptions, l: Layout, offsets: number[], counts: number[]): IfdEntry[] {
  const g = o.geo;
  const spp = l.bands;
  const perSample = (v: number): number[] => new Array<number>(spp).fill(v);
  const e: IfdEntry[] = [
    { tag: 256, type: TIFF_LONG, values: [o.width] },
    { tag: 257, type: TIFF_LONG, values: [o.height] },
    { tag: 258, type: TIFF_SHORT, values: perSample(l.bytesPerSample * 8) },
    { tag: 259, type: TIFF_SHORT, values: [8] },
    { tag: 262, type: TIFF_SHORT, values: [1] },
    { tag: 277, type: TIFF_SHORT, values: [spp] },
    { tag: 284, type: TIFF_SHORT, values: [spp > 1 ? 2 : 1] },
    { tag: 322, type: TIFF_LONG, values: [l.tile] },
    { tag: 323, type: TIFF_LONG, values: [l.tile] },
    { tag: 324, type: TIFF_LONG, values: offsets },
    { tag: 325, type: TIFF_LONG, values: counts },
    { tag: 339, type: TIFF_SHORT, values: perSample(l.sampleFormat) },
    { tag: 33550, type: TIFF_DOUBLE, values: [g.pixelSize[0], g.pixelSize[1], 0] },
    { tag: 33922, type: TIFF_DOUBLE, values: [0, 0, 0, g.origin[0], g.origin[1], 0] },
  ];
  if (l.predictor !== 1) e.push({ tag: 317, type: TIFF_SHORT, values: [l.predictor] });
  if (spp > 1) e.push({ tag: 338, type: TIFF_SHORT, values: new Array<number>(spp - 1).fill(0) });
  const keys = g.geoKeyDirectory ?? defaultGeoKeys(g.epsg);
  if (keys) e.push({ tag: 34735, type: TIFF_SHORT, values: keys });
  if (g.geoDoubleParams?.length) e.push({ tag: 34736, type: TIFF_DOUBLE, values: g.geoDoubleParams });
  if (g.geoAsciiParams) e.push({ tag: 34737, type: TIFF_ASCII, values: g.geoAsciiParams });
  if (o.metadata && Object.keys(o.metadata).length) e.push({ tag: 42112, type: TIFF_ASCII, values: gdalMetadataXml(o.metadata) });
  if (o.nodata !== undefined && o.nodata !== null) e.push({ tag: 42113, type: TIFF_ASCII, values: String(o.nodata) });
  return e;
}

/** Minimal GeoKeyDirectory for an EPSG code: model type, PixelIsArea, the CRS key. */
function defaultGeoKeys(epsg: number | null): number[] | null {
  if (epsg === null) return null;
  const geographic = epsg >= 4000 && epsg < 5000;
  return [1, 1, 0, 3, 1024, 0, 1, geographic ? 2 : 1, 1025, 0, 1, 1, geographic ? 2048 : 3072, 0, 1, epsg];
}

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const unescapeXml = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');

/** GDAL escapes item values twice (CPLES_XML, then the XML writer) and unescapes twice on read. */
function gdalMetadataXml(items: Record<string, string>): string {
  const lines = Object.entries(items).map(([k, v]) => `  <Item name="${escapeXml(k)}">${escapeXml(escapeXml(String(v)))}</Item>`);
  return `<GDALMetadata>\n${lines.join('\n')}\n</GDALMetadata>\n`;
}

/** The dataset-level GDAL_METADATA items of a GeoTIFF (per-band items are skipped). */
export async function readGeoTiffMetadata(path: string): Promise<Record<string, string>> {
  const file = await openTiff(path, 'GeoTIFF');
  try {
    const fd = file.image.getFileDirectory();
    if (!fd.hasTag('GDAL_METADATA')) return {};
    const xml = String(await fd.loadValue('GDAL_METADATA'));
    const out: Record<string, string> = {};
    for (const m of xml.matchAll(/<Item\s+([^>]*)>([\s\S]*?)<\/Item>/g)) {
      const attrs = m[1]!;
      const name = /name="([^"]*)"/.exec(attrs)?.[1];
      if (name === undefined || /\bsample="/.test(attrs) || /\brole="/.test(attrs)) continue;
      out[unescapeXml(name)] = unescapeXml(unescapeXml(m[2]!));
    }
    return out;
  } finally {
    await closeTiff(file.tiff);
  }
}
