/**
 * Binary dilation with a disk footprint (scipy `binary_dilation(mask, disk(r))`, border 0),
 * computed on bit-packed rows: 32 pixels per word, so the whole scene is a few shifts and ORs
 * per word instead of 81 reads per pixel. See docs/merge.md.
 */
import { CloudMaskError } from '../../shared/errors.ts';
import { assertMaskShape, emptyPacked, lastWordMask, packMask, unpackMask, type PackedMask } from '../../shared/packed-mask.ts';

/**
 * Half-width of each footprint row: entry dy + r is the largest h with h^2 + dy^2 <= r^2
 * (r = 5 gives 0,3,4,4,4,5,4,4,4,3,0).
 */
export function diskHalfWidths(radius: number): number[] {
  const widths: number[] = [];
  for (let dy = -radius; dy <= radius; dy++) {
    let h = 0;
    while ((h + 1) * (h + 1) + dy * dy <= radius * radius) h++;
    widths.push(h);
  }
  return widths;
}

/**
 * In place on one row of `stride` words at `off`: `row[x] |= row[x + s]` (forward, reads to
 * the right) or `row[x] |= row[x - s]` (backward, reads to the left), with 0 shifted in from
 * outside the row. Forward runs left to right and backward right to left, so each word reads
 * only words not yet updated.
 */
function orShiftedRow(words: Int32Array, off: number, stride: number, s: number, forward: boolean): void {
  const q = s >>> 5;
  const b = s & 31;
  const c = 32 - b;
  const n = stride - q; // words that receive something
  if (n <= 0) return;
  if (forward) {
    const last = off + n - 1;
    if (b === 0) {
      for (let i = off; i <= last; i++) words[i] |= words[i + q];
    } else {
      for (let i = off; i < last; i++) words[i] |= (words[i + q] >>> b) | (words[i + q + 1] << c);
      words[last] |= words[last + q] >>> b;
    }
  } else {
    const first = off + q;
    if (b === 0) {
      for (let i = off + stride - 1; i >= first; i--) words[i] |= words[i - q];
    } else {
      for (let i = off + stride - 1; i > first; i--) words[i] |= (words[i - q] << b) | (words[i - q - 1] >>> c);
      words[first] |= words[first - q] << b;
    }
  }
}

/**
 * Horizontal dilations of one row, one per half-width in `targets` (ascending), written to
 * `out[t]` at `outOff`. One-sided windows F_k[x] = OR(P[x .. x+k-1]) (and B_k, looking left)
 * grow by doubling, F_{k+s} = F_k | F_k[x+s] for s <= k, and the centred dilation of
 * half-width h is F_{h+1} | B_{h+1}. A one-sided window never needs a value from beyond the
 * row that is not truly 0; a centred window grown the same way would, near the row ends.
 */
function dilateRow(
  src: Int32Array, srcOff: number, stride: number, targets: number[],
  fwd: Int32Array, bwd: Int32Array, out: Int32Array[], outOff: number,
): void {
  fwd.set(src.subarray(srcOff, srcOff + stride));
  bwd.set(fwd);
  let k = 1;
  for (let t = 0; t < targets.length; t++) {
    const h = targets[t];
    while (k < h + 1) {
      const s = Math.min(k, h + 1 - k);
      orShiftedRow(fwd, 0, stride, s, true);
      orShiftedRow(bwd, 0, stride, s, false);
      k += s;
    }
    const o = out[t];
    for (let i = 0; i < stride; i++) o[outOff + i] = fwd[i] | bwd[i];
  }
}

function orInto(dst: Int32Array, dstOff: number, src: Int32Array, srcOff: number, n: number): void {
  for (let i = 0; i < n; i++) dst[dstOff + i] |= src[srcOff + i];
}

/**
 * Disk dilation of a packed mask; returns a new packed mask. Rows stream through a ring of the
 * last 2r+1 horizontally dilated rows (one ring per distinct half-width), which stays in cache:
 * output row y is the OR, over the footprint rows dy, of input row y+dy dilated by h(dy).
 */
export function dilatePacked(p: PackedMask, radius: number): PackedMask {
  const { width, height, stride, words } = p;
  if (radius === 0 || height === 0) return { ...p, words: words.slice() };
  const halfWidths = diskHalfWidths(radius);
  const targets = [...new Set(halfWidths)].sort((a, b) => a - b);
  const ringOf = halfWidths.map((h) => targets.indexOf(h));
  const span = 2 * radius + 1;
  const rings = targets.map(() => new Int32Array(span * stride));
  const fwd = new Int32Array(stride);
  const bwd = new Int32Array(stride);
  const result = emptyPacked(width, height);
  const out = result.words;
  const tail = lastWordMask(width);
  for (let y = 0; y < height + radius; y++) {
    if (y < height) dilateRow(words, y * stride, stride, targets, fwd, bwd, rings, (y % span) * stride);
    const yo = y - radius;
    if (yo < 0) continue;
    const o = yo * stride;
    for (let dy = -radius; dy <= radius; dy++) {
      const ys = yo + dy;
      if (ys < 0 || ys >= height) continue;
      const ring = rings[ringOf[dy + radius]];
      const r = (ys % span) * stride;
      orInto(out, o, ring, r, stride);
    }
    // Backward windows spill past the right edge into the unused tail bits: clear them.
    out[o + stride - 1] &= tail;
  }
  return result;
}

/** Disk dilation (every offset with dy^2 + dx^2 <= r^2; outside the image counts as 0). Returns a new 0/1 mask. */
export function dilateDisk(mask: Uint8Array, width: number, height: number, radius = 5): Uint8Array {
  if (!Number.isInteger(radius) || radius < 0) throw new CloudMaskError('BAD_OPTION', `radius must be a non-negative integer, got ${radius}`);
  assertMaskShape(mask, width, height);
  return unpackMask(dilatePacked(packMask(mask, width, height), radius));
}
