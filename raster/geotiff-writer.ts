/**
 * A small Cloud-Optimized GeoTIFF writer: tiled, DEFLATE (node:zlib), little-endian classic TIFF,
 * band-separate planes, optional internal overviews, georeferencing copied from a GeoInfo,
 * written to a temporary file and renamed into place. geotiff.js can write neither tiles nor
 * compression, hence this module.
 *
 * Layout, as GDAL's COG driver writes it (see docs/outputs.md): header, GDAL's "ghost" structural
 * metadata, every IFD (full resolution first, then the overviews by decreasing size; their sizes
 * are known before any tile is compressed), then the tile data of the smallest overview first and
 * the full resolution last, each level band by band in row-major order, each tile preceded by its
 * size (4 bytes) and followed by a copy of its last 4 bytes. The IFDs are rewritten with the real
 * offsets at the end. Tiles are compressed one at a time (see SLICE_MS) and written in batches,
 * so beyond the overviews (at most a third of the raster) memory stays at a few megabytes of
 * compressed tiles whatever the raster size.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { constants as zlib, deflateSync, type ZlibOptions } from 'node:zlib';
import { CloudMaskError, fsReason } from '../shared/errors.ts';
import { gdalMetadataXml, pamCategoriesXml } from './gdal-metadata.ts';
import type { PackedMask } from '../shared/packed-mask.ts';
import { buildOverviews, isPacked, type Level, type OverviewResampling, type Pixels } from './overviews.ts';
import { floatingPointDifference, horizontalDifference } from './tiff-predictor.ts';
import { encodeIfd, ifdLength, TIFF_ASCII, TIFF_DOUBLE, TIFF_LONG, TIFF_SHORT, type IfdEntry } from './tiff-ifd.ts';
import type { GeoInfo } from './types.ts';

export { readGeoTiffMetadata } from './gdal-metadata.ts';
export type { OverviewResampling } from './overviews.ts';

export interface WriteOptions {
  width: number;
  height: number;
  /** Number of bands in `data`; default 1. */
  bands?: number;
  /**
   * Band-major pixels [bands][height][width], or one uint8 band of 0/1 values held as bits
   * (a mask as the coordinator keeps it: tiles are unpacked one at a time, and 'max' overviews
   * are computed on the bits).
   */
  data: Pixels | PackedMask;
  geo: GeoInfo;
  /** Tile width and height in pixels, a multiple of 16; default 512. */
  tileSize?: number;
  /** GDAL_NODATA tag; also fills partial edge tiles. Default null (no tag, edges filled with 0). */
  nodata?: number | null;
  /** GDAL_METADATA items (tag 42112). */
  metadata?: Record<string, string>;
  /**
   * 2 = horizontal differencing (integer data only), 3 = floating-point predictor (float32
   * only). Default 2 for uint16 (DN compress much better), 1 for uint8 and float32.
   */
  predictor?: 1 | 2 | 3;
  /** zlib level 1..9; default 6, and 1 for uint8 rasters (see deflateOptions). */
  level?: number;
  /** Internal overviews (halving until the smallest fits one tile) and how they are computed; default none. */
  overviews?: OverviewResampling | null;
  /** One description per band (what GDAL shows as the band's description); default none. */
  bandDescriptions?: readonly string[];
  /** Colour table of a single uint8 band (photometric palette): [r, g, b] in 0..255 per value, at most 256. */
  colormap?: ReadonlyArray<readonly [number, number, number]>;
  /** Category names of a single band's values, written as the PAM sidecar `<path>.aux.xml` (GDAL and QGIS read them there). */
  categoryNames?: readonly string[];
}

/**
 * Tiles are deflated synchronously: zlib's asynchronous calls cost more CPU in stream machinery
 * than a mask tile's compression itself (measured on a full-tile mask: 225 ms of CPU against 91
 * for the same tiles with deflateSync). The writer yields to the event loop every SLICE_MS and
 * writes the file in batches of WRITE_BATCH bytes.
 */
const SLICE_MS = 10;
const WRITE_BATCH = 4 << 20;
const MAX_CLASSIC = 2 ** 32 - 1;

/** Writes `opts` as a GeoTIFF at `path`, atomically: on failure nothing is left at `path`. */
export async function writeGeoTiff(path: string, opts: WriteOptions): Promise<void> {
  const layout = planLayout(opts);
  const full: Level = { width: opts.width, height: opts.height, data: opts.data };
  const levels = [full, ...(opts.overviews ? buildOverviews(full, layout.bands, layout.tile, opts.overviews) : [])];
  const suffix = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = `${path}${suffix}`;
  const aux = `${path}.aux.xml`;
  let fh: FileHandle | null = null;
  let auxRenamed = false;
  try {
    fh = await open(tmp, 'wx');
    await writeBody(fh, opts, layout, levels);
    await fh.datasync();
    await fh.close();
    fh = null;
    // The sidecar describes this file only: a stale one from an earlier write goes.
    if (opts.categoryNames?.length) {
      await writeFile(`${aux}${suffix}`, pamCategoriesXml(opts.categoryNames), { flag: 'wx' });
      await rename(`${aux}${suffix}`, aux);
      auxRenamed = true;
    } else {
      await rm(aux, { force: true });
    }
    await rename(tmp, path);
  } catch (err) {
    if (fh) await fh.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    await rm(`${aux}${suffix}`, { force: true }).catch(() => {});
    if (auxRenamed) await rm(aux, { force: true }).catch(() => {});
    if (err instanceof CloudMaskError) throw err;
    throw new CloudMaskError('OUTPUT_FAILED', `cannot write GeoTIFF ${path}: ${fsReason(err)}`, { cause: err });
  }
}

interface Layout {
  bands: number;
  tile: number;
  bytesPerSample: number;
  sampleFormat: number;
  predictor: 1 | 2 | 3;
  fill: number;
}

function planLayout(o: WriteOptions): Layout {
  const bands = o.bands ?? 1;
  const tile = o.tileSize ?? 512;
  const bad = (why: string): RangeError => new RangeError(`writeGeoTiff: ${why}`);
  if (!Number.isInteger(o.width) || o.width < 1 || !Number.isInteger(o.height) || o.height < 1) throw bad(`size ${o.width}x${o.height} must be positive integers`);
  if (!Number.isInteger(bands) || bands < 1 || bands > 65535) throw bad(`bands ${bands} must be a positive integer`);
  if (!Number.isInteger(tile) || tile < 16 || tile % 16 !== 0) throw bad(`tileSize ${tile} must be a positive multiple of 16`);
  if (isPacked(o.data)) {
    if (bands !== 1 || o.data.width !== o.width || o.data.height !== o.height) throw bad(`bits of ${o.data.width}x${o.data.height} for ${bands} band(s) of ${o.width}x${o.height}`);
  } else if (o.data.length !== o.width * o.height * bands) throw bad(`data has ${o.data.length} values, expected ${bands}x${o.height}x${o.width}`);
  const isFloat = o.data instanceof Float32Array;
  const predictor = o.predictor ?? (o.data instanceof Uint16Array ? 2 : 1);
  if (isFloat && predictor === 2) throw bad('predictor 2 needs integer data');
  if (!isFloat && predictor === 3) throw bad('predictor 3 needs float32 data');
  if (o.colormap && (bands !== 1 || !isBytes(o.data) || o.colormap.length > 256)) throw bad('a colormap needs one uint8 band and at most 256 colours');
  if (o.categoryNames && bands !== 1) throw bad('categoryNames need a single band');
  if (o.bandDescriptions && o.bandDescriptions.length > bands) throw bad(`${o.bandDescriptions.length} band descriptions for ${bands} bands`);
  const bytesPerSample = isPacked(o.data) ? 1 : o.data.BYTES_PER_ELEMENT;
  return { bands, tile, bytesPerSample, sampleFormat: isFloat ? 3 : 1, predictor, fill: o.nodata ?? 0 };
}

/** uint8 pixels, as bytes or as bits. */
const isBytes = (d: Pixels | PackedMask): boolean => d instanceof Uint8Array || isPacked(d);

const tilesOf = (lv: Level, l: Layout): { x: number; y: number; count: number } => {
  const x = Math.ceil(lv.width / l.tile);
  const y = Math.ceil(lv.height / l.tile);
  return { x, y, count: x * y * l.bands };
};

/** GDAL's ghost header: tells readers the file keeps the COG layout and block leaders/trailers. */
function ghostHeader(): Buffer {
  const body = 'LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\nBLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ';
  return Buffer.from(`GDAL_STRUCTURAL_METADATA_SIZE=${String(body.length).padStart(6, '0')} bytes\n${body}`, 'latin1');
}

async function writeBody(fh: FileHandle, o: WriteOptions, l: Layout, levels: Level[]): Promise<void> {
  const offsets = levels.map((lv) => new Array<number>(tilesOf(lv, l).count).fill(0));
  const counts = levels.map((lv) => new Array<number>(tilesOf(lv, l).count).fill(0));
  const entries = (k: number): IfdEntry[] => ifdEntries(o, l, levels[k]!, k, offsets[k]!, counts[k]!);
  const ghost = ghostHeader();
  const ifdAt: number[] = [8 + ghost.length + ((8 + ghost.length) & 1)];
  for (let k = 1; k <= levels.length; k++) ifdAt.push(ifdAt[k - 1]! + ifdLength(entries(k - 1)));
  const header = Buffer.from([0x49, 0x49, 42, 0, 0, 0, 0, 0]);
  header.writeUInt32LE(ifdAt[0]!, 4);
  await fh.write(Buffer.concat([header, ghost]), 0, 8 + ghost.length, 0);

  // Smallest overview first, full resolution last.
  const order: Array<[number, number]> = [];
  for (let k = levels.length - 1; k >= 0; k--) for (let i = 0; i < offsets[k]!.length; i++) order.push([k, i]);
  let pos = ifdAt[levels.length]!;
  const zopts = deflateOptions(o);
  const scratch = isPacked(o.data) ? new Uint8Array(l.tile * l.tile) : new (o.data.constructor as new (n: number) => Pixels)(l.tile * l.tile);
  let batch: Buffer[] = [];
  let batchAt = pos;
  let batchBytes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length > 0) await fh.writev(batch, batchAt);
    batch = [];
    batchAt = pos;
    batchBytes = 0;
  };
  let slice = performance.now();
  for (const [k, i] of order) {
    const z = deflateSync(tileBytes(levels[k]!, l, i, scratch), zopts);
    if (pos + z.length + 8 > MAX_CLASSIC) throw new CloudMaskError('OUTPUT_FAILED', `GeoTIFF would exceed 4 GB (BigTIFF is not supported)`);
    const leader = Buffer.alloc(4);
    leader.writeUInt32LE(z.length, 0);
    batch.push(leader, z, z.subarray(z.length - 4));
    offsets[k]![i] = pos + 4;
    counts[k]![i] = z.length;
    pos += z.length + 8;
    batchBytes += z.length + 8;
    if (batchBytes >= WRITE_BATCH) await flush();
    // Compression runs on this thread, a slice at a time, so the event loop still answers between slices.
    if (performance.now() - slice > SLICE_MS) {
      await new Promise((r) => setImmediate(r));
      slice = performance.now();
    }
  }
  await flush();
  const ifds = levels.map((_, k) => encodeIfd(entries(k), ifdAt[k]!, k + 1 < levels.length ? ifdAt[k + 1]! : 0));
  await fh.write(Buffer.concat(ifds), 0, ifdAt[levels.length]! - ifdAt[0]!, ifdAt[0]!);
}

/**
 * uint8 rasters (masks, classes) are long runs of a few values: zlib's run-length strategy finds
 * all there is to find in them. On a real full-tile mask it deflated the tiles 5x faster than the
 * default strategy at level 6, and 1 % smaller. Other data keeps the default strategy.
 */
function deflateOptions(o: WriteOptions): ZlibOptions {
  if (isBytes(o.data)) return { level: o.level ?? 1, strategy: zlib.Z_RLE };
  return { level: o.level ?? 6 };
}

/** Tile `index` (band-major, then rows, then columns) of a level as raw bytes, predictor applied. */
function tileBytes(lv: Level, l: Layout, index: number, out: Pixels): Uint8Array {
  const { x: tilesX, y: tilesY } = tilesOf(lv, l);
  const perBand = tilesX * tilesY;
  const band = Math.floor(index / perBand);
  const tx = index % tilesX;
  const ty = Math.floor((index % perBand) / tilesX);
  const t = l.tile;
  const x0 = tx * t;
  const y0 = ty * t;
  const w = Math.min(t, lv.width - x0);
  const h = Math.min(t, lv.height - y0);
  if (w < t || h < t) out.fill(l.fill); // the scratch tile is reused: partial tiles refill it
  if (isPacked(lv.data)) {
    unpackTile(lv.data, x0, y0, w, h, out as Uint8Array, t);
    return out as Uint8Array;
  }
  const bandOff = band * lv.width * lv.height;
  for (let j = 0; j < h; j++) {
    const s = bandOff + (y0 + j) * lv.width + x0;
    out.set(lv.data.subarray(s, s + w) as never, j * t);
  }
  if (l.predictor === 2) horizontalDifference(out as Uint8Array | Uint16Array, t);
  if (l.predictor === 3) return floatingPointDifference(out as Float32Array, t);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Pixels [x0, x0 + w) x [y0, y0 + h) of bits into a t-wide tile (x0 a multiple of 32); the rest of the tile is 0. */
function unpackTile(p: PackedMask, x0: number, y0: number, w: number, h: number, out: Uint8Array, t: number): void {
  out.fill(0);
  const { stride, words } = p;
  for (let j = 0; j < h; j++) {
    const row = (y0 + j) * stride + (x0 >>> 5);
    const o = j * t;
    for (let k = 0, x = 0; x < w; k++, x += 32) {
      const v = words[row + k];
      if (v === 0) continue;
      const n = Math.min(32, w - x);
      if (v === -1) out.fill(1, o + x, o + x + n);
      else for (let b = 0; b < n; b++) out[o + x + b] = (v >>> b) & 1;
    }
  }
}

/** The IFD of level `k` (0 = full resolution: it alone carries georeferencing and metadata). */
function ifdEntries(o: WriteOptions, l: Layout, lv: Level, k: number, offsets: number[], counts: number[]): IfdEntry[] {
  const spp = l.bands;
  const perSample = (v: number): number[] => new Array<number>(spp).fill(v);
  const e: IfdEntry[] = [
    { tag: 256, type: TIFF_LONG, values: [lv.width] },
    { tag: 257, type: TIFF_LONG, values: [lv.height] },
    { tag: 258, type: TIFF_SHORT, values: perSample(l.bytesPerSample * 8) },
    { tag: 259, type: TIFF_SHORT, values: [8] },
    { tag: 262, type: TIFF_SHORT, values: [o.colormap ? 3 : 1] },
    { tag: 277, type: TIFF_SHORT, values: [spp] },
    { tag: 284, type: TIFF_SHORT, values: [spp > 1 ? 2 : 1] },
    { tag: 322, type: TIFF_LONG, values: [l.tile] },
    { tag: 323, type: TIFF_LONG, values: [l.tile] },
    { tag: 324, type: TIFF_LONG, values: offsets },
    { tag: 325, type: TIFF_LONG, values: counts },
    { tag: 339, type: TIFF_SHORT, values: perSample(l.sampleFormat) },
  ];
  if (k > 0) e.push({ tag: 254, type: TIFF_LONG, values: [1] }); // NewSubfileType: reduced-resolution image
  if (l.predictor !== 1) e.push({ tag: 317, type: TIFF_SHORT, values: [l.predictor] });
  if (o.colormap) e.push({ tag: 320, type: TIFF_SHORT, values: colorMap(o.colormap) });
  if (spp > 1) e.push({ tag: 338, type: TIFF_SHORT, values: new Array<number>(spp - 1).fill(0) });
  if (o.nodata !== undefined && o.nodata !== null) e.push({ tag: 42113, type: TIFF_ASCII, values: String(o.nodata) });
  if (k === 0) e.push(...geoEntries(o));
  return e;
}

function geoEntries(o: WriteOptions): IfdEntry[] {
  const g = o.geo;
  const e: IfdEntry[] = [
    { tag: 33550, type: TIFF_DOUBLE, values: [g.pixelSize[0], g.pixelSize[1], 0] },
    { tag: 33922, type: TIFF_DOUBLE, values: [0, 0, 0, g.origin[0], g.origin[1], 0] },
  ];
  const keys = g.geoKeyDirectory ?? defaultGeoKeys(g.epsg);
  if (keys) e.push({ tag: 34735, type: TIFF_SHORT, values: keys });
  if (g.geoDoubleParams?.length) e.push({ tag: 34736, type: TIFF_DOUBLE, values: g.geoDoubleParams });
  if (g.geoAsciiParams) e.push({ tag: 34737, type: TIFF_ASCII, values: g.geoAsciiParams });
  const xml = gdalMetadataXml(o.metadata ?? {}, o.bandDescriptions);
  if (xml) e.push({ tag: 42112, type: TIFF_ASCII, values: xml });
  return e;
}

/** TIFF ColorMap: 256 reds, then greens, then blues, 16 bits each (8-bit x 257); unlisted values black. */
function colorMap(colors: ReadonlyArray<readonly [number, number, number]>): number[] {
  const out = new Array<number>(3 * 256).fill(0);
  colors.forEach(([r, g, b], i) => {
    out[i] = r * 257;
    out[256 + i] = g * 257;
    out[512 + i] = b * 257;
  });
  return out;
}

/** Minimal GeoKeyDirectory for an EPSG code: model type, PixelIsArea, the CRS key. */
function defaultGeoKeys(epsg: number | null): number[] | null {
  if (epsg === null) return null;
  const geographic = epsg >= 4000 && epsg < 5000;
  return [1, 1, 0, 3, 1024, 0, 1, geographic ? 2 : 1, 1025, 0, 1, 1, geographic ? 2048 : 3072, 0, 1, epsg];
}
