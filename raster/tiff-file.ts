/**
 * Opening one GeoTIFF (local path or http(s) URL) with geotiff.js, turning every failure into a
 * CloudMaskError that names the file, and reading clipped windows of its full-resolution image.
 */
import { open, stat } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import { addDecoder, BaseDecoder, fromFile, GeoTIFF, type GeoTIFFImage } from 'geotiff';
import { CloudMaskError } from '../shared/errors.ts';
import { ownBuffer } from './bytes.ts';
import { contentRangeTotal, currentHttpReadOptions, httpRequest, startIoThreadEarly, statusError } from './http-range.ts';
import { HEADER_BLOCK, HttpRangeSource } from './http-source.ts';
import type { HttpOptions } from './http.ts';
import { inflateInto } from './inflate-into.ts';
import { lzwDecode } from './lzw.ts';
import type { TileCache } from './tile-cache.ts';
import { readWindowSamples, type Pixels } from './tiff-window.ts';
import type { GeoInfo, Window } from './types.ts';

export const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

/** An open TIFF: image 0 (full resolution; overviews are ignored) and what we checked about it. */
export interface TiffFile {
  readonly href: string;
  /** What the file is, for messages: "band B05", "product mask", "stacked scene". */
  readonly label: string;
  readonly tiff: GeoTIFF;
  readonly image: GeoTIFFImage;
  readonly width: number;
  readonly height: number;
  readonly samples: number;
  /** "uint16", "float32", ... of sample 0. */
  readonly sampleType: string;
  /** Names the file's content (href, size, modification time or ETag): the key of its cached tiles. */
  readonly contentKey: string;
}


/**
 * Undoes horizontal differencing (TIFF predictor 2) in place: each sample plus the one `stride`
 * samples to its left, per row, wrapping like the integer type. Same result as geotiff.js's
 * applyPredictor, without its per-row allocations.
 */
export function undoHorizontalDifferencing(a: Uint8Array | Uint16Array | Uint32Array, rowLength: number, stride: number): void {
  if (stride === 1 && a instanceof Uint16Array) return undoDifferencing16(a, rowLength);
  if (stride === 1 && a instanceof Uint8Array) return undoDifferencing8(a, rowLength);
  const rows = Math.floor(a.length / rowLength);
  for (let r = 0; r < rows; r++) {
    const end = (r + 1) * rowLength;
    for (let i = r * rowLength + stride; i < end; i++) a[i] = a[i]! + a[i - stride]!;
  }
}

/** The common case (one 16-bit sample per pixel), the running sum kept in a register. */
function undoDifferencing16(a: Uint16Array, rowLength: number): void {
  const rows = Math.floor(a.length / rowLength);
  for (let r = 0; r < rows; r++) {
    const start = r * rowLength;
    const end = start + rowLength;
    let sum = a[start]!;
    for (let i = start + 1; i < end; i++) {
      sum = (sum + a[i]!) & 0xffff;
      a[i] = sum;
    }
  }
}

/** One 8-bit sample per pixel (SCL), in a loop of its own: the shared loop above sees three array types. */
function undoDifferencing8(a: Uint8Array, rowLength: number): void {
  const rows = Math.floor(a.length / rowLength);
  for (let r = 0; r < rows; r++) {
    const start = r * rowLength;
    const end = start + rowLength;
    let sum = a[start]!;
    for (let i = start + 1; i < end; i++) {
      sum = (sum + a[i]!) & 0xff;
      a[i] = sum;
    }
  }
}

/** Bytes of one decoded tile or strip (one sample of it where samples are planar). */
function blockBytes({ tileWidth, tileHeight, bitsPerSample, planarConfiguration }: BaseDecoder['parameters']): number {
  const bits = typeof bitsPerSample === 'number' ? [bitsPerSample] : Array.from(bitsPerSample as ArrayLike<number>);
  const bytesPerPixel = planarConfiguration === 2 ? bits[0]! / 8 : bits.reduce((a, b) => a + b, 0) / 8;
  return Math.ceil(tileWidth * tileHeight * bytesPerPixel);
}

/**
 * DEFLATE through node:zlib: several times faster than the pako decoder geotiff.js ships with.
 * zlib's output chunk is the block's full size: a tile inflates into one buffer, not into 16 KiB
 * chunks concatenated into a second one (a copy, and fresh memory to fault in, per tile).
 */
class NodeDeflateDecoder extends BaseDecoder {
  decodeBlock(buffer: ArrayBufferLike): ArrayBufferLike {
    const bytes = blockBytes(this.parameters);
    const out = inflateSync(new Uint8Array(buffer), Number.isSafeInteger(bytes) && bytes >= 64 ? { chunkSize: bytes } : {});
    return ownBuffer(out);
  }

  /** Integer predictor 2 undone here (geotiff.js's is several times slower); others as geotiff.js does. */
  async decode(buffer: ArrayBufferLike): Promise<ArrayBufferLike> {
    const undo = this.predictorUndo();
    if (undo === undefined) return super.decode(buffer as ArrayBuffer);
    const decoded = this.decodeBlock(buffer) as ArrayBuffer;
    undo?.(decoded, 0, decoded.byteLength);
    return decoded;
  }

  /**
   * decode() into `out` (a tile-cache slot): the bytes written, or null when it cannot be done
   * there (the caller decodes as usual): see raster/inflate-into.ts.
   */
  decodeInto(buffer: Uint8Array, out: Uint8Array): number | null {
    const undo = this.predictorUndo();
    if (undo === undefined) return null;
    const n = inflateInto(buffer, out);
    if (n !== null) undo?.(out.buffer, out.byteOffset, n);
    return n;
  }

  /** Undoes predictor 2 on bytes of a decoded block; null: no predictor; undefined: one geotiff.js undoes. */
  private predictorUndo(): ((b: ArrayBufferLike, offset: number, bytes: number) => void) | null | undefined {
    const { predictor, bitsPerSample, planarConfiguration, tileWidth } = this.parameters;
    if (predictor === 1) return null;
    const bits = typeof bitsPerSample === 'number' ? [bitsPerSample] : Array.from(bitsPerSample as ArrayLike<number>);
    const size = bits[0]!;
    if (predictor !== 2 || !bits.every((b) => b === size) || (size !== 8 && size !== 16 && size !== 32)) return undefined;
    const stride = planarConfiguration === 2 ? 1 : bits.length;
    const Ctor = size === 8 ? Uint8Array : size === 16 ? Uint16Array : Uint32Array;
    return (b, offset, bytes) => undoHorizontalDifferencing(new Ctor(b as ArrayBuffer, offset, Math.floor(bytes / (size / 8))), tileWidth * stride, stride);
  }
}

/** LZW with our decoder (lzw.ts); geotiff.js's runs at about 15 MB/s. */
class FastLzwDecoder extends BaseDecoder {
  decodeBlock(buffer: ArrayBufferLike): ArrayBufferLike {
    const out = lzwDecode(new Uint8Array(buffer), blockBytes(this.parameters));
    return out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength);
  }
}

let decodersRegistered = false;
function registerDecoders(): void {
  if (decodersRegistered) return;
  addDecoder([8, 32946], async () => NodeDeflateDecoder);
  addDecoder(5, async () => FastLzwDecoder);
  decodersRegistered = true;
}

const where = (label: string, href: string): string => `${label} ${href}`;

/** Opens `href` and checks that it is a readable, complete TIFF; `http` headers go with every request of a URL. */
export async function openTiff(href: string, label: string, http?: HttpOptions): Promise<TiffFile> {
  registerDecoders();
  const key = aheadKey(href, http);
  const early = probesAhead.get(key);
  probesAhead.delete(key);
  if (isUrl(href)) startIoThreadEarly();
  const probe = early ? await early : isUrl(href) ? await probeUrl(href, label, http) : await probeFile(href, label);
  const size = probe.size;
  let tiff: GeoTIFF;
  let image: GeoTIFFImage;
  try {
    tiff = isUrl(href) ? await GeoTIFF.fromSource(new HttpRangeSource(href, label, size, http?.headers ?? {}, currentHttpReadOptions(), probe.head)) : await fromFile(href);
    image = await tiff.getImage(0);
  } catch (err) {
    // An http failure already says whether a retry can help (a server ignoring Range: no).
    if (err instanceof CloudMaskError) throw err;
    const code = isUrl(href) && !/byte order|magic|version|invalid/i.test(String(err)) ? 'TRANSIENT_IO' : 'BAD_INPUT';
    throw new CloudMaskError(code, `${where(label, href)} cannot be read as a TIFF: ${(err as Error).message}`, { cause: err });
  }
  try {
    const file = await describe(href, label, tiff, image, `${href}|${probe.size ?? '?'}|${probe.version}`);
    if (size !== null) await checkComplete(file, size);
    return file;
  } catch (err) {
    await closeTiff(tiff);
    throw err;
  }
}

/** Probes started by {@link probeAhead}, by URL and headers; each is taken by the next opening of its URL. */
const probesAhead = new Map<string, Promise<Probe>>();
const aheadKey = (href: string, http: HttpOptions | undefined): string => `${href}|${JSON.stringify(http?.headers ?? {})}`;

/**
 * Starts the one request that opening URL `href` begins with, so that it overlaps other work (the
 * product mask's beside the bands'); the next {@link openTiff} of it takes the answer, or its
 * error. Local paths and a URL already probed ahead are left alone; an answer nobody takes goes
 * after a minute.
 */
export function probeAhead(href: string, label: string, http?: HttpOptions): void {
  const key = aheadKey(href, http);
  if (!isUrl(href) || probesAhead.has(key)) return;
  const p = probeUrl(href, label, http);
  p.catch(() => {});
  probesAhead.set(key, p);
  setTimeout(() => probesAhead.get(key) === p && probesAhead.delete(key), 60_000).unref();
}

/** What the probe learnt: size (null when unknown) and a version (mtime, ETag) naming the content. */
interface Probe {
  size: number | null;
  version: string;
  /** A URL's first bytes (its first block, where the header and first IFD lie), read by the probe. */
  head?: Uint8Array;
}

/** Local file: exists, is a file, starts like a TIFF. Returns its size and modification time. */
async function probeFile(href: string, label: string): Promise<Probe> {
  let size: number;
  let version: string;
  try {
    const st = await stat(href);
    if (!st.isFile()) throw new CloudMaskError('BAD_INPUT', `${where(label, href)} is not a file`);
    size = st.size;
    version = `${st.mtimeMs}:${st.ino}`;
  } catch (err) {
    if (err instanceof CloudMaskError) throw err;
    throw new CloudMaskError('INPUT_NOT_FOUND', `${where(label, href)} not found (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  const head = Buffer.alloc(4);
  const fh = await open(href, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new CloudMaskError('INPUT_NOT_FOUND', `${where(label, href)} cannot be opened (${err.code ?? err.message})`, { cause: err });
  });
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  if (!isTiffMagic(head)) throw new CloudMaskError('BAD_INPUT', `${where(label, href)} is not a TIFF (no TIFF header)`);
  return { size, version };
}

export function isTiffMagic(b: Uint8Array): boolean {
  const le = b[0] === 0x49 && b[1] === 0x49 && b[3] === 0;
  const be = b[0] === 0x4d && b[1] === 0x4d && b[2] === 0;
  return (le && (b[2] === 42 || b[2] === 43)) || (be && (b[3] === 42 || b[3] === 43));
}

/**
 * URL: one range read of the file's first block, not a HEAD and then a read: the answer's
 * Content-Range gives the size, its ETag (or Last-Modified) the version, and its body the header
 * that geotiff.js asks for next. A missing file is INPUT_NOT_FOUND, trouble worth retrying
 * TRANSIENT_IO, a server ignoring Range BAD_INPUT (http-range.ts).
 */
async function probeUrl(href: string, label: string, http: HttpOptions | undefined): Promise<Probe> {
  const { res, body } = await httpRequest({ url: href, label, headers: http?.headers, range: { start: 0, end: HEADER_BLOCK - 1 } }, currentHttpReadOptions());
  const total = contentRangeTotal(res.header('content-range'));
  const version = res.header('etag') ?? res.header('last-modified') ?? '';
  if (!isTiffMagic(body)) throw new CloudMaskError('BAD_INPUT', `${where(label, href)} is not a TIFF (no TIFF header)`);
  return { size: Number.isFinite(total) && total > 0 ? total : null, version, head: body };
}

/** "fetch failed" says little: the cause (ECONNREFUSED, ENOTFOUND, ...) says more. */
export function fetchFailure(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message ?? 'fetch failed'}: ${cause}` : String(e.message ?? err);
}

/** Throws the CloudMaskError an HTTP status stands for; 2xx pass. */
export function httpStatusError(status: number, label: string, href: string): void {
  if (status >= 200 && status < 300) return;
  if (status >= 500 || status === 408 || status === 429) throw new CloudMaskError('TRANSIENT_IO', `${where(label, href)}: server answered HTTP ${status}`);
  throw statusError(status, where(label, href));
}

async function describe(href: string, label: string, tiff: GeoTIFF, image: GeoTIFFImage, contentKey: string): Promise<TiffFile> {
  const fd = image.getFileDirectory();
  const bits = toNumbers(await fd.loadValue('BitsPerSample'));
  const formats = toNumbers(await fd.loadValue('SampleFormat'));
  const sampleType = typeName(bits[0] ?? 1, formats[0] ?? 1);
  return { href, label, tiff, image, width: image.getWidth(), height: image.getHeight(), samples: image.getSamplesPerPixel(), sampleType, contentKey };
}

function typeName(bits: number, format: number): string {
  const kind = format === 3 ? 'float' : format === 2 ? 'int' : format === 1 ? 'uint' : `format${format}-`;
  return `${kind}${bits}`;
}

function toNumbers(v: unknown): number[] {
  if (v === undefined || v === null) return [];
  if (typeof v === 'number' || typeof v === 'bigint') return [Number(v)];
  return Array.from(v as ArrayLike<number | bigint>, Number);
}

/** Every tile or strip must lie inside the file: a cut-off download fails here, not mid-run. */
async function checkComplete(file: TiffFile, size: number): Promise<void> {
  const fd = file.image.getFileDirectory();
  const tiled = fd.hasTag('TileOffsets');
  const offsets = toNumbers(await fd.loadValue(tiled ? 'TileOffsets' : 'StripOffsets'));
  const counts = toNumbers(await fd.loadValue(tiled ? 'TileByteCounts' : 'StripByteCounts'));
  if (offsets.length === 0 || offsets.length !== counts.length) {
    throw new CloudMaskError('BAD_INPUT', `${where(file.label, file.href)} has a broken ${tiled ? 'tile' : 'strip'} index`);
  }
  for (let i = 0; i < offsets.length; i++) {
    const end = offsets[i]! + counts[i]!;
    if (end > size) {
      throw new CloudMaskError('BAD_INPUT', `${where(file.label, file.href)} is truncated: ${tiled ? 'tile' : 'strip'} ${i} ends at byte ${end} but the file has ${size} bytes`);
    }
  }
}

/** Grid of the file's image 0; BAD_INPUT when it is not georeferenced. */
export async function geoInfoOf(file: TiffFile): Promise<GeoInfo> {
  const { image } = file;
  let origin: number[];
  let res: number[];
  try {
    origin = image.getOrigin();
    res = image.getResolution();
  } catch {
    throw new CloudMaskError('BAD_INPUT', `${where(file.label, file.href)} has no georeferencing (ModelTiepoint/ModelPixelScale)`);
  }
  const fd = image.getFileDirectory();
  const keys = image.getGeoKeys() ?? {};
  const epsgKey = Number(keys.ProjectedCSTypeGeoKey ?? keys.GeographicTypeGeoKey ?? NaN);
  const dir = fd.hasTag('GeoKeyDirectory') ? toNumbers(await fd.loadValue('GeoKeyDirectory')) : null;
  const doubles = fd.hasTag('GeoDoubleParams') ? toNumbers(await fd.loadValue('GeoDoubleParams')) : null;
  const ascii = fd.hasTag('GeoAsciiParams') ? String(await fd.loadValue('GeoAsciiParams')).replace(/\0+$/, '') : null;
  return {
    width: file.width,
    height: file.height,
    origin: [origin[0]!, origin[1]!],
    pixelSize: [Math.abs(res[0]!), Math.abs(res[1]!)],
    epsg: Number.isInteger(epsgKey) && epsgKey > 0 && epsgKey !== 32767 ? epsgKey : null,
    geoKeyDirectory: dir,
    geoAsciiParams: ascii,
    geoDoubleParams: doubles,
  };
}

/** The part of `win` inside the image, or null when none is. */
export function clipWindow(win: Window, width: number, height: number): Window | null {
  const x0 = Math.max(0, win.x);
  const y0 = Math.max(0, win.y);
  const x1 = Math.min(width, win.x + win.width);
  const y1 = Math.min(height, win.y + win.height);
  return x1 > x0 && y1 > y0 ? { x: x0, y: y0, width: x1 - x0, height: y1 - y0 } : null;
}

/** Reads `samples` of a window lying inside the image, one array per sample; decoded tiles go through `cache` when given. */
export async function readSamples(file: TiffFile, win: Window, samples: number[], cache?: TileCache, into?: Pixels[]): Promise<Pixels[]> {
  try {
    return await readWindowSamples(file.image, win, samples, cache ? { cache, key: file.contentKey, claimBeforeRead: isUrl(file.href) } : undefined, into);
  } catch (err) {
    // Errors that know what they are keep their code: a tile that does not decode is
    // CORRUPT_INPUT (permanent), an http failure says whether a retry can help. Anything else is
    // a read that failed, retryable even for local files: on a shared volume (NFS, a bucket
    // mount) a failed read is often a glitch.
    const code = err instanceof CloudMaskError ? err.code : 'TRANSIENT_IO';
    const w = `${win.width}x${win.height} at ${win.x},${win.y}`;
    throw new CloudMaskError(code, `${where(file.label, file.href)}: reading window ${w} failed: ${(err as Error).message}`, { cause: err });
  }
}

export async function closeTiff(tiff: GeoTIFF): Promise<void> {
  try {
    await tiff.close();
  } catch {
    // Closing is best effort: the descriptor is gone either way.
  }
}
