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
 * `out[t]` at `outOff`; the row is the OR of row `y` of every plane in `src`. One-sided windows
 * F_k[x] = OR(P[x .. x+k-1]) (and B_k, looking left) grow by doubling, F_{k+s} = F_k | F_k[x+s]
 * for s <= k, and the centred dilation of half-width h is F_{h+1} | B_{h+1}. A one-sided window
 * never needs a value from beyond the row that is not truly 0; a centred window grown the same
 * way would, near the row ends.
 */
function dilateRow(
  src: readonly PackedMask[], y: number, stride: number, targets: number[],
  fwd: Int32Array, bwd: Int32Array, out: Int32Array[], outOff: number,
): void {
  const srcOff = y * stride;
  fwd.set(src[0]!.words.subarray(srcOff, srcOff + stride));
  for (let p = 1; p < src.length; p++) orInto(fwd, 0, src[p]!.words, srcOff, stride);
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
 * Disk dilation of the OR of some packed planes, fed in rows as they become final (the
 * coordinator dilates chip rows while later ones are still being inferred). Rows stream through
 * a ring of the last 2r+1 horizontally dilated rows (one ring per distinct half-width), which
 * stays in cache: output row y is the OR, over the footprint rows dy, of input row y+dy dilated
 * by h(dy). After `feed(planes, n)`, output rows below n - r are final; `finish` takes the rest.
 */
export class DiskDilation {
  readonly result: PackedMask;
  readonly radius: number;
  private readonly targets: number[];
  private readonly ringOf: number[];
  private readonly rings: Int32Array[];
  private readonly fwd: Int32Array;
  private readonly bwd: Int32Array;
  private readonly tail: number;
  /** Input rows taken so far (the next step's row). */
  private next = 0;

  constructor(width: number, height: number, radius: number) {
    if (!Number.isInteger(radius) || radius < 0) throw new CloudMaskError('BAD_OPTION', `radius must be a non-negative integer, got ${radius}`);
    this.result = emptyPacked(width, height);
    this.radius = radius;
    const halfWidths = diskHalfWidths(radius);
    this.targets = [...new Set(halfWidths)].sort((a, b) => a - b);
    this.ringOf = halfWidths.map((h) => this.targets.indexOf(h));
    const { stride } = this.result;
    this.rings = this.targets.map(() => new Int32Array((2 * radius + 1) * stride));
    this.fwd = new Int32Array(stride);
    this.bwd = new Int32Array(stride);
    this.tail = lastWordMask(width);
  }

  /** Input rows taken so far. */
  get rowsIn(): number {
    return Math.min(this.next, this.result.height);
  }

  /** Takes input rows up to `upTo` (exclusive): row y is the OR of row y of every plane, final from now on. */
  feed(planes: readonly PackedMask[], upTo: number): void {
    const { width, height } = this.result;
    if (planes.length === 0 || planes.some((p) => p.width !== width || p.height !== height)) throw new RangeError(`planes must be ${width}x${height}`);
    const end = Math.min(upTo, height);
    for (; this.next < end; this.next++) this.step(planes, this.next);
  }

  /** Takes the remaining input rows and returns the dilated mask. */
  finish(planes: readonly PackedMask[]): PackedMask {
    this.feed(planes, this.result.height);
    for (; this.next < this.result.height + this.radius; this.next++) this.step(planes, this.next);
    return this.result;
  }

  /** Input row y into the rings (when y is a row), then output row y - r out of them. */
  private step(planes: readonly PackedMask[], y: number): void {
    const { height, stride } = this.result;
    const r = this.radius;
    const span = 2 * r + 1;
    if (y < height) dilateRow(planes, y, stride, this.targets, this.fwd, this.bwd, this.rings, (y % span) * stride);
    const yo = y - r;
    if (yo < 0) return;
    const out = this.result.words;
    const o = yo * stride;
    for (let dy = -r; dy <= r; dy++) {
      const ys = yo + dy;
      if (ys < 0 || ys >= height) continue;
      orInto(out, o, this.rings[this.ringOf[dy + r]!]!, (ys % span) * stride, stride);
    }
    // Backward windows spill past the right edge into the unused tail bits: clear them.
    out[o + stride - 1] &= this.tail;
  }
}

/** Disk dilation of a packed mask; returns a new packed mask (see {@link DiskDilation}). */
export function dilatePacked(p: PackedMask, radius: number): PackedMask {
  if (radius === 0 || p.height === 0) return { ...p, words: p.words.slice() };
  return new DiskDilation(p.width, p.height, radius).finish([p]);
}

/** Disk dilation (every offset with dy^2 + dx^2 <= r^2; outside the image counts as 0). Returns a new 0/1 mask. */
export function dilateDisk(mask: Uint8Array, width: number, height: number, radius = 5): Uint8Array {
  if (!Number.isInteger(radius) || radius < 0) throw new CloudMaskError('BAD_OPTION', `radius must be a non-negative integer, got ${radius}`);
  assertMaskShape(mask, width, height);
  return unpackMask(dilatePacked(packMask(mask, width, height), radius));
}
