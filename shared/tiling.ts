/**
 * FarmVibes' chip layout, exactly: chips of `chip` pixels every `step` pixels, starts from
 * numpy's round-half-to-even of linspace, overlaps split at their midpoint so every output pixel
 * comes from exactly one chip. Pure functions; the coordinator plans with them and the worker
 * never needs to (a job carries its windows).
 */

export const CHIP_SIZE = 512;
export const CHIP_STEP = 384;

/** One chip along one axis. `read*` are scene coordinates; `write*` too; `slice*` are chip-relative. */
export interface AxisChip {
  readStart: number;
  writeStart: number;
  writeEnd: number;
  sliceStart: number;
  sliceEnd: number;
}

/** numpy's np.round: half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The chips along an axis of length `dim`. When `dim < chip` FarmVibes raises; we return a
 * single chip starting at 0 that extends past the edge (the reader pads with nodata).
 */
export function axisLayout(dim: number, chip = CHIP_SIZE, step = CHIP_STEP): AxisChip[] {
  if (!Number.isInteger(dim) || dim <= 0) throw new RangeError(`axis length must be a positive integer, got ${dim}`);
  if (dim <= chip) return [{ readStart: 0, writeStart: 0, writeEnd: dim, sliceStart: 0, sliceEnd: dim }];
  const n = Math.max(Math.ceil((dim - chip) / step) + 1, 2);
  const starts: number[] = [];
  const last = dim - chip;
  // As numpy's linspace: i * (delta / div), and the last point exactly `stop`.
  const step_ = last / (n - 1);
  for (let i = 0; i < n; i++) starts.push(roundHalfEven(i === n - 1 ? last : i * step_));
  const chips: AxisChip[] = [];
  for (let i = 0; i < n; i++) {
    const start = starts[i];
    const writeStart = i === 0 ? 0 : Math.floor((starts[i - 1] + chip + start) / 2);
    const writeEnd = i === n - 1 ? dim : Math.floor((start + chip + starts[i + 1]) / 2);
    chips.push({ readStart: start, writeStart, writeEnd, sliceStart: writeStart - start, sliceEnd: writeEnd - start });
  }
  return chips;
}

/** A chip of the scene: where to read (always chip x chip) and which part of it to keep. */
export interface ChipPlan {
  /** Row-major index, 0-based. */
  index: number;
  row: number;
  col: number;
  /** Read window in scene pixels; may extend past the scene when the scene is smaller than a chip. */
  read: { x: number; y: number; width: number; height: number };
  /** Write window in scene pixels; the tiles of all chips partition the scene. */
  write: { x: number; y: number; width: number; height: number };
}

export interface SceneLayout {
  width: number;
  height: number;
  chipSize: number;
  cols: AxisChip[];
  rows: AxisChip[];
  count: number;
}

export function sceneLayout(width: number, height: number, chip = CHIP_SIZE, step = CHIP_STEP): SceneLayout {
  const cols = axisLayout(width, chip, step);
  const rows = axisLayout(height, chip, step);
  return { width, height, chipSize: chip, cols, rows, count: cols.length * rows.length };
}

/** The chip with row-major index `index`. */
export function chipAt(layout: SceneLayout, index: number): ChipPlan {
  if (!Number.isInteger(index) || index < 0 || index >= layout.count) {
    throw new RangeError(`chip index ${index} outside 0..${layout.count - 1}`);
  }
  const row = Math.floor(index / layout.cols.length);
  const col = index % layout.cols.length;
  const r = layout.rows[row];
  const c = layout.cols[col];
  return {
    index,
    row,
    col,
    read: { x: c.readStart, y: r.readStart, width: layout.chipSize, height: layout.chipSize },
    write: { x: c.writeStart, y: r.writeStart, width: c.writeEnd - c.writeStart, height: r.writeEnd - r.writeStart },
  };
}

/** All chips, row-major. */
export function planChips(layout: SceneLayout): ChipPlan[] {
  const out: ChipPlan[] = [];
  for (let i = 0; i < layout.count; i++) out.push(chipAt(layout, i));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Inference domain: where a chip's models must run for its write window to come out exactly as
// FarmVibes computes it over the whole chip.

type Win = ChipPlan['read'];

/** One axis of a window: [start, end). */
function span(w: Win, axis: 'x' | 'y'): [number, number] {
  return axis === 'x' ? [w.x, w.x + w.width] : [w.y, w.y + w.height];
}

/**
 * The smallest window the models need to reproduce, bit for bit, the chip's output over its
 * write window: the write window grown by `margin` (the models' receptive-field radius), cut to
 * the read window. Where the read window's edge is closer than `margin` (a scene edge, or an
 * overlap narrower than the margin) the domain keeps that edge, so its pixels see the same
 * padding as in the whole chip. A margin at least as wide as every overlap gives the read window.
 */
export function inferenceWindow(read: Win, write: Win, margin: number): Win {
  if (!Number.isInteger(margin) || margin < 0) throw new RangeError(`margin must be a non-negative integer, got ${margin}`);
  const x0 = Math.max(read.x, write.x - margin);
  const y0 = Math.max(read.y, write.y - margin);
  const x1 = Math.min(read.x + read.width, write.x + write.width + margin);
  const y1 = Math.min(read.y + read.height, write.y + write.height + margin);
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

/**
 * Whether running the models over `domain` instead of `read` gives every pixel of `write` the
 * same neighbourhood (same pixels inside, same padding outside) for a model whose output at a
 * pixel depends only on the input within `margin` pixels of it: per axis and side, the domain's
 * edge is the read window's edge, or both are at least `margin` from the write window.
 */
export function isExactDomain(read: Win, write: Win, domain: Win, margin: number): boolean {
  for (const axis of ['x', 'y'] as const) {
    const [r0, r1] = span(read, axis);
    const [w0, w1] = span(write, axis);
    const [d0, d1] = span(domain, axis);
    if (d0 < r0 || d1 > r1 || w0 < d0 || w1 > d1) return false;
    if (d0 !== r0 && w0 - d0 < margin) return false;
    if (d1 !== r1 && d1 - w1 < margin) return false;
  }
  return true;
}

/** Whether two windows are the same. */
export function sameWindow(a: Win, b: Win): boolean {
  return a.x === b.x && a.y === b.y && a.width === b.width && a.height === b.height;
}
