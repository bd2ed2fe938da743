/**
 * Bit-packed 0/1 rasters, the form the coordinator keeps masks in from stitching to the merge:
 * one bit per pixel in 32-bit words, each row starting on a word, so a full tile's plane is
 * 15 MB instead of 120 and most passes over it touch 32 pixels at a time.
 */
import { CloudMaskError } from './errors.ts';

/**
 * A 0/1 mask with one bit per pixel. Row y occupies words [y*stride, (y+1)*stride); pixel x is
 * bit (x & 31) of word (x >>> 5), least significant bit first. Bits at x >= width are always 0.
 * Int32 words so that `~w` and `w === -1` need no unsigned conversions.
 */
export interface PackedMask {
  readonly width: number;
  readonly height: number;
  /** Words per row: ceil(width / 32). */
  readonly stride: number;
  readonly words: Int32Array;
}

/** Throws unless `mask` holds exactly width x height pixels. */
export function assertMaskShape(mask: Uint8Array, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0 || mask.length !== width * height) {
    throw new CloudMaskError('BAD_INPUT', `mask of ${mask.length} pixels does not match ${width}x${height}`);
  }
}

/** Mask of the valid bits in the last word of a row (all ones when width is a multiple of 32). */
export function lastWordMask(width: number): number {
  const tail = width & 31;
  return tail === 0 ? -1 : (1 << tail) - 1;
}

export function emptyPacked(width: number, height: number): PackedMask {
  const stride = (width + 31) >>> 5;
  return { width, height, stride, words: new Int32Array(stride * height) };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Packs `mask[i] !== 0` into bits. */
export function packMask(mask: Uint8Array, width: number, height: number): PackedMask {
  const packed = emptyPacked(width, height);
  if (LITTLE_ENDIAN && mask.byteOffset % 4 === 0 && width % 4 === 0) packAligned(mask, packed);
  else packBytes(mask, packed);
  return packed;
}

function packBytes(mask: Uint8Array, packed: PackedMask): void {
  const { width, height, stride, words } = packed;
  for (let y = 0; y < height; y++) {
    const rowIn = y * width;
    const rowOut = y * stride;
    for (let k = 0; k < stride; k++) {
      const x0 = k << 5;
      const n = Math.min(32, width - x0);
      let i = rowIn + x0;
      let w = 0;
      for (let b = 0; b < n; b++, i++) if (mask[i] !== 0) w |= 1 << b;
      words[rowOut + k] = w;
    }
  }
}

/**
 * Four pixels per read when every row starts on a 4-byte boundary (10980-wide scenes do). For
 * a little-endian word v of four pixels, `t` has bit 7 of each byte set where that byte is
 * nonzero; the multiply gathers those four bits into bits 28..31 without carries.
 */
function packAligned(mask: Uint8Array, packed: PackedMask): void {
  const { width, height, stride, words } = packed;
  const quads = new Uint32Array(mask.buffer, mask.byteOffset, mask.length >>> 2);
  const quadsPerRow = width >>> 2;
  for (let y = 0; y < height; y++) {
    const rowIn = y * quadsPerRow;
    const rowOut = y * stride;
    for (let k = 0; k < stride; k++) {
      const q0 = rowIn + (k << 3);
      const n = Math.min(8, quadsPerRow - (k << 3));
      let w = 0;
      for (let j = 0; j < n; j++) {
        const v = quads[q0 + j];
        if (v === 0) continue;
        const t = (((v & 0x7f7f7f7f) + 0x7f7f7f7f) | v) & 0x80808080;
        w |= (Math.imul(t >>> 7, 0x10204080) >>> 28) << (j << 2);
      }
      words[rowOut + k] = w;
    }
  }
}

/** Unpacks to one byte per pixel, 0 or 1. Whole-word runs of 0 or 1 skip the per-bit loop. */
export function unpackMask(packed: PackedMask): Uint8Array {
  const { width, height, stride, words } = packed;
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const rowIn = y * stride;
    const rowOut = y * width;
    for (let k = 0; k < stride; k++) {
      const w = words[rowIn + k];
      if (w === 0) continue;
      const x0 = k << 5;
      const n = Math.min(32, width - x0);
      const o = rowOut + x0;
      if (w === -1) {
        out.fill(1, o, o + n);
        continue;
      }
      for (let b = 0; b < n; b++) out[o + b] = (w >>> b) & 1;
    }
  }
  return out;
}

/**
 * ORs a `width` x `height` block of bits into `p` at (x, y). The block's bits run on across its
 * rows (bit r * width + c, least significant first in each byte): the layout of a tile result's
 * planes (shared/bitpack.ts). The block is read into words once (an all-zero block stops
 * there), then each destination word takes the 32 source bits under it with two shifts.
 */
export function orBitsInto(p: PackedMask, bits: Uint8Array, width: number, height: number, x: number, y: number): void {
  const src = wordsOf(bits);
  if (src === null) return;
  const { stride, words } = p;
  const first = x >>> 5;
  const last = (x + width - 1) >>> 5;
  for (let r = 0; r < height; r++) {
    const row = (y + r) * stride;
    const delta = r * width - x; // source bit = destination bit + delta
    // The row's first and last words may be partial; those between take 32 bits each, from a
    // source position whose shift within its word is the same for the whole row.
    orEdgeWord(words, row, first, src, delta, x, x + width);
    if (last === first) continue;
    const at0 = ((first + 1) << 5) + delta;
    const b = at0 & 31;
    const cb = 32 - b;
    let q = at0 >>> 5;
    for (let k = first + 1; k < last; k++, q++) {
      const v = b === 0 ? src[q] : (src[q] >>> b) | (src[q + 1] << cb);
      if (v !== 0) words[row + k] |= v;
    }
    orEdgeWord(words, row, last, src, delta, x, x + width);
  }
}

/** Destination word k of a row: the source bits under its part of [d0, d1). */
function orEdgeWord(words: Int32Array, row: number, k: number, src: Int32Array, delta: number, d0: number, d1: number): void {
  const base = k << 5;
  const lo = d0 > base ? d0 - base : 0;
  const hi = d1 < base + 32 ? d1 - base : 32;
  const at = base + delta;
  let v: number;
  if (at < 0) {
    v = src[0] << -at;
  } else {
    const q = at >>> 5;
    const b = at & 31;
    v = b === 0 ? src[q] : (src[q] >>> b) | (src[q + 1] << (32 - b));
  }
  const n = hi - lo;
  v &= (n === 32 ? -1 : (1 << n) - 1) << lo;
  if (v !== 0) words[row + k] |= v;
}

let scratch = new Int32Array(1 << 14);

/**
 * Bytes as little-endian 32-bit words, with one word of 0 after them (so a read of the word
 * after any bit is in bounds); null when every byte is 0. The words live in a scratch buffer
 * reused by the next call (a full tile stitches 2,500 planes: no garbage for each).
 */
function wordsOf(bytes: Uint8Array): Int32Array | null {
  const n = (bytes.length + 3) >>> 2;
  if (scratch.length < n + 1) scratch = new Int32Array(2 * (n + 1));
  const out = scratch;
  out.fill(0, Math.max(0, n - 1), n + 1);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer, 0, bytes.length).set(bytes);
  } else {
    out.fill(0, 0, n);
    for (let j = 0; j < bytes.length; j++) out[j >>> 2] |= bytes[j] << (8 * (j & 3));
  }
  for (let i = 0; i < n; i++) if (out[i] !== 0) return out;
  return null;
}

/** ORs `source` into `target`, word by word (one size). */
export function orInto(target: PackedMask, source: PackedMask): void {
  if (source.width !== target.width || source.height !== target.height) throw new RangeError(`packed masks of ${target.width}x${target.height} and ${source.width}x${source.height}`);
  const w = target.words;
  const q = source.words;
  for (let i = 0; i < w.length; i++) w[i] |= q[i];
}

/** The word-wise OR of packed masks of one size, as a new mask. */
export function orPacked(first: PackedMask, ...rest: PackedMask[]): PackedMask {
  const out = { ...first, words: first.words.slice() };
  for (const p of rest) orInto(out, p);
  return out;
}

/** Set bits of a packed mask (bits past the width are always 0). */
export function countSet(p: PackedMask): number {
  let n = 0;
  const w = p.words;
  for (let i = 0; i < w.length; i++) {
    let v = w[i];
    if (v === 0) continue;
    v = v - ((v >>> 1) & 0x55555555);
    v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
    n += (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
  }
  return n;
}
