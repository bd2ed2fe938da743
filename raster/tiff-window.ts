/**
 * Window reads straight from decoded tiles. geotiff.js's readRasters copies every pixel through
 * a DataView call (about 15 ns a pixel, more than decoding costs); here rows are copied with
 * TypedArray.set and interleaved samples with a plain strided loop. Anything unusual (big-endian,
 * mixed sample sizes, JPEG/LERC/WebP needing extra decoder parameters) goes through readRasters.
 */
import { getDecoder, type BaseDecoder, type GeoTIFFImage } from 'geotiff';
import { CloudMaskError } from '../shared/errors.ts';
import { ownBuffer } from './bytes.ts';
import type { TileCache, TileLease } from './tile-cache.ts';

export type Pixels = Uint8Array | Uint16Array | Uint32Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
type PixelsCtor = new (buffer: ArrayBufferLike, byteOffset?: number, length?: number) => Pixels;
interface Win {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Compressions whose decoders need only the default parameters. */
const FAST_COMPRESSIONS = new Set([1, 5, 8, 32946, 32773, 50000]);

const decoders = new WeakMap<GeoTIFFImage, Promise<BaseDecoder | null>>();

let decodes = 0;
/** Compressed tiles this thread decoded on the fast path (what the tile cache and job affinity save). */
export function decodeCount(): number {
  return decodes;
}

/** Where decoded tiles of an image may be kept: a cache, and a key naming the file's content. */
export interface CacheRef {
  cache: TileCache;
  key: string;
  /**
   * Claim a tile before its compressed bytes are read (a remote file, where a read is a request
   * not to make twice), rather than only for its decode (raster/tile-cache.ts).
   */
  claimBeforeRead?: boolean;
}

/**
 * Reads `samples` of `win` (which must lie inside the image), one array per sample: into `into`
 * (one array of the image's sample type and win.width * win.height values per sample) when given.
 */
export async function readWindowSamples(image: GeoTIFFImage, win: Win, samples: number[], cacheRef?: CacheRef, into?: Pixels[]): Promise<Pixels[]> {
  const decoder = await decoderFor(image);
  const Ctor = decoder ? ctorFor(image) : null;
  if (!decoder || !Ctor) {
    const r = Array.from((await image.readRasters({ window: [win.x, win.y, win.x + win.width, win.y + win.height], samples, interleave: false })) as unknown as Pixels[]);
    if (!into) return r;
    r.forEach((a, k) => into[k]!.set(a));
    return into;
  }
  const n = win.width * win.height;
  const fits = (a: Pixels | undefined): boolean => a instanceof Ctor && a.length === n;
  if (into && (into.length !== samples.length || !into.every(fits))) throw new RangeError(`readWindowSamples: into must hold ${samples.length} ${Ctor.name}(s) of ${n} values`);
  const out = into ?? samples.map(() => new Ctor(new ArrayBuffer(n * Ctor.prototype.BYTES_PER_ELEMENT)));
  const tw = image.getTileWidth();
  const th = image.getTileHeight();
  const planar = image.planarConfiguration === 2;
  const spp = image.getSamplesPerPixel();
  const bpe = Ctor.prototype.BYTES_PER_ELEMENT as number;
  const tile = (tx: number, ty: number, s: number): Promise<TileLease> => {
    const load = async (): Promise<ArrayBufferLike> => (await image.getTileOrStrip(tx, ty, s, decoder)).data;
    if (!cacheRef) return load().then((data) => ({ bytes: new Uint8Array(data), release: () => {} }));
    // A sparse block (no bytes) is left to geotiff.js, which fills it with the nodata value.
    const into = (decoder as { decodeInto?: DecodeInto }).decodeInto;
    const split = {
      fetch: () => compressedBlock(image, tx, ty, s),
      decode: (raw: Uint8Array) => (raw.byteLength === 0 ? load() : decoder.decode(ownBuffer(raw))),
      decodeInto: into && ((raw: Uint8Array, out: Uint8Array) => (raw.byteLength === 0 ? null : into(raw, out))),
      claimBeforeRead: cacheRef.claimBeforeRead,
    };
    // Priority: the tile's bottom edge as a fraction of the image (tiles above the chips are evicted first).
    const priority = Math.min(1, ((ty + 1) * th) / image.getHeight());
    return cacheRef.cache.get(`${cacheRef.key}|${s}|${tx}|${ty}`, split, priority);
  };
  const copy = async (tx: number, ty: number, s: number, copyIt: (block: Pixels) => void): Promise<void> => {
    const lease = await tile(tx, ty, s);
    try {
      const { bytes } = lease;
      copyIt(new Ctor(bytes.buffer, bytes.byteOffset, Math.floor(bytes.byteLength / bpe)));
    } finally {
      lease.release();
    }
  };
  const jobs: Promise<void>[] = [];
  for (let ty = Math.floor(win.y / th); ty * th < win.y + win.height; ty++) {
    for (let tx = Math.floor(win.x / tw); tx * tw < win.x + win.width; tx++) {
      if (planar) {
        samples.forEach((s, k) => jobs.push(copy(tx, ty, s, (block) => copyTile(block, 1, [0], [out[k]!], tx * tw, ty * th, tw, win))));
      } else {
        jobs.push(copy(tx, ty, 0, (block) => copyTile(block, spp, samples, out, tx * tw, ty * th, tw, win)));
      }
    }
  }
  await Promise.all(jobs);
  return out;
}

/** A source that can answer a range with a view into a larger read (raster/http-source.ts), sparing a copy. */
interface ViewSource {
  fetchBytes(slice: { offset: number; length: number }): Promise<Uint8Array>;
}

/**
 * The compressed bytes of block (tx, ty) of sample `s`, as geotiff.js's getTileOrStrip finds
 * them; empty for a sparse block.
 */
async function compressedBlock(image: GeoTIFFImage, tx: number, ty: number, s: number): Promise<Uint8Array> {
  const across = Math.ceil(image.getWidth() / image.getTileWidth());
  const down = Math.ceil(image.getHeight() / image.getTileHeight());
  const index = (image.planarConfiguration === 2 ? s * across * down : 0) + ty * across + tx;
  const fd = image.getFileDirectory();
  const offset = Number(await fd.loadValueIndexed(image.isTiled ? 'TileOffsets' : 'StripOffsets', index));
  const length = Number(await fd.loadValueIndexed(image.isTiled ? 'TileByteCounts' : 'StripByteCounts', index));
  if (length === 0) return new Uint8Array(0);
  const source = image.source as unknown as Partial<ViewSource>;
  if (source.fetchBytes) return source.fetchBytes({ offset, length });
  return new Uint8Array((await image.source.fetch([{ offset, length }]))[0]!);
}

/** Copies the part of a decoded block (origin bx, by; `stride` pixels a row) inside `win`. */
function copyTile(block: Pixels, spp: number, samples: number[], out: Pixels[], bx: number, by: number, stride: number, win: Win): void {
  const rows = Math.floor(block.length / (stride * spp));
  const x0 = Math.max(win.x, bx);
  const x1 = Math.min(win.x + win.width, bx + stride);
  const y0 = Math.max(win.y, by);
  const y1 = Math.min(win.y + win.height, by + rows);
  for (let y = y0; y < y1; y++) {
    const src = ((y - by) * stride + (x0 - bx)) * spp;
    const dst = (y - win.y) * win.width + (x0 - win.x);
    if (spp === 1) {
      out[0]!.set(block.subarray(src, src + (x1 - x0)), dst);
      continue;
    }
    samples.forEach((s, k) => {
      const o = out[k]!;
      for (let i = 0, p = src + s; i < x1 - x0; i++, p += spp) o[dst + i] = block[p]!;
    });
  }
}

async function decoderFor(image: GeoTIFFImage): Promise<BaseDecoder | null> {
  let d = decoders.get(image);
  if (!d) {
    d = makeDecoder(image);
    decoders.set(image, d);
  }
  return d;
}

async function makeDecoder(image: GeoTIFFImage): Promise<BaseDecoder | null> {
  const fd = image.getFileDirectory();
  const compression = Number((await fd.loadValue('Compression')) ?? 1);
  const bits = Array.from((await fd.loadValue('BitsPerSample')) as ArrayLike<number>, Number);
  const sameSize = bits.every((b) => b === bits[0]);
  if (!image.littleEndian || !sameSize || !FAST_COMPRESSIONS.has(compression)) return null;
  return decodeErrorsPermanent(await getDecoder(compression, {
    tileWidth: image.getTileWidth(),
    tileHeight: image.getTileHeight(),
    planarConfiguration: image.planarConfiguration,
    bitsPerSample: bits,
    predictor: Number((await fd.loadValue('Predictor')) ?? 1),
  }));
}

/**
 * The decoder, its failures made CORRUPT_INPUT: bytes that were read completely but do not
 * inflate (zlib's "invalid distance code", "incorrect data check", a bad LZW code) are the same
 * bytes on every delivery, so retrying cannot help. Read failures come from the source, not from
 * here, and keep their own (transient) code.
 */
function decodeErrorsPermanent(decoder: BaseDecoder): BaseDecoder {
  const wrapped = Object.create(decoder) as BaseDecoder;
  wrapped.decode = async (buffer: ArrayBufferLike): Promise<ArrayBufferLike> => {
    decodes++;
    try {
      return await decoder.decode(buffer);
    } catch (err) {
      throw undecodable(buffer, err);
    }
  };
  const into = (decoder as { decodeInto?: DecodeInto }).decodeInto?.bind(decoder);
  if (into) {
    (wrapped as BaseDecoder & { decodeInto: DecodeInto }).decodeInto = (buffer, out) => {
      let n: number | null;
      try {
        n = into(buffer, out);
      } catch (err) {
        decodes++;
        throw undecodable(buffer, err);
      }
      if (n !== null) decodes++;
      return n;
    };
  }
  return wrapped;
}

const undecodable = (buffer: { byteLength: number }, err: unknown): CloudMaskError =>
  new CloudMaskError('CORRUPT_INPUT', `a compressed tile of ${buffer.byteLength} bytes does not decode (${(err as Error).message})`, { cause: err });

/** Decodes a block into `out`: the bytes written, or null when the caller must decode() instead. */
type DecodeInto = (buffer: Uint8Array, out: Uint8Array) => number | null;

function ctorFor(image: GeoTIFFImage): PixelsCtor | null {
  const bits = image.getBitsPerSample(0);
  const format = image.getSampleFormat(0);
  const table: Record<string, PixelsCtor> = {
    '1:8': Uint8Array, '1:16': Uint16Array, '1:32': Uint32Array,
    '2:8': Int8Array, '2:16': Int16Array, '2:32': Int32Array,
    '3:32': Float32Array, '3:64': Float64Array,
  };
  return table[`${format}:${bits}`] ?? null;
}
