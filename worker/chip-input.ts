/**
 * A chip's model input from the union window its job read: the 12 bands of the chip's window as
 * float32 DN [12, h, w] (harmonized, max(v - 1000, 0), when the scene asks for it), and its
 * nodata mask (a pixel any band of which is 0).
 *
 * `prepareChipReference` is the definition, in plain JavaScript. `ChipInputs` computes the same
 * bits with a WebAssembly SIMD kernel (chip-input.wat), 8 values at a time: the JavaScript loop
 * took about 2 ns a value (bounds checks in row loops, and a separate scan for zeros), 8 % of a
 * chip thread's time on a full tile (1.2 s); the kernel takes 0.19 s of it and the row copies into
 * its memory 0.54 s (cpu profiles; `npm run bench` does not time this alone;
 * test/chip-input.test.ts checks the bits on real pixels).
 */
import type { Window } from '../raster/types.ts';
import { CHIP_INPUT_WASM } from './chip-input-wasm.ts';

/** DN offset of harmonized scenes (processing baseline 04.00 and later). */
const HARMONIZE_OFFSET = 1000;
const BANDS = 12;
const PAGE = 65536;

/**
 * The model input [12, h, w] of raw DN (harmonized when asked) of window `win`, cut out of the
 * union window into `dn`, and its nodata mask (any band == 0) into `nodata`. Returns the count of
 * valid pixels.
 */
export function prepareChipReference(pixels: Uint16Array, union: Window, win: Window, harmonize: boolean, dn: Float32Array, nodata: Uint8Array): number {
  const { width: w, height: h } = win;
  const count = w * h;
  const plane = union.width * union.height;
  const dx = win.x - union.x;
  const dy = win.y - union.y;
  nodata.fill(0, 0, count);
  let zeros = 0;
  for (let b = 0; b < BANDS; b++) {
    for (let r = 0; r < h; r++) {
      const src = b * plane + (dy + r) * union.width + dx;
      const row = pixels.subarray(src, src + w);
      const dst = b * count + r * w;
      if (!harmonize) {
        dn.set(row, dst);
      } else {
        for (let c = 0; c < w; c++) {
          const v = row[c]!;
          dn[dst + c] = v > HARMONIZE_OFFSET ? v - HARMONIZE_OFFSET : 0;
        }
      }
      for (let c = row.indexOf(0); c >= 0; c = row.indexOf(0, c + 1)) {
        if (nodata[r * w + c] === 0) {
          nodata[r * w + c] = 1;
          zeros++;
        }
      }
    }
  }
  return count - zeros;
}

/** Model input and nodata mask of one chip's pixels (already cut to the chip), in new arrays. */
export function prepareInput(pixels: Uint16Array, count: number, harmonize: boolean): ChipInput {
  const row = { x: 0, y: 0, width: count, height: 1 };
  const dn = new Float32Array(BANDS * count);
  const nodata = new Uint8Array(count);
  const valid = prepareChipReference(pixels, row, row, harmonize, dn, nodata);
  return { dn, nodata, valid };
}

/** A chip's model input and nodata mask, and its count of valid pixels. */
export interface ChipInput {
  dn: Float32Array;
  nodata: Uint8Array;
  valid: number;
}

interface Kernel {
  memory: WebAssembly.Memory;
  prep(src: number, dst: number, nd: number, n: number, off: number): void;
  count(nd: number, n: number): number;
}

let compiled: WebAssembly.Module | null = null;

/**
 * Prepares chips with the kernel, one chip at a time: what `prepare` returns stays valid until
 * its next call (one instance per thread; the chip's inference and packing come in between).
 */
export class ChipInputs {
  private readonly k: Kernel;
  private u8: Uint8Array;
  private u16: Uint16Array;

  constructor() {
    compiled ??= new WebAssembly.Module(Buffer.from(CHIP_INPUT_WASM, 'base64'));
    this.k = new WebAssembly.Instance(compiled).exports as unknown as Kernel;
    this.u8 = new Uint8Array(this.k.memory.buffer);
    this.u16 = new Uint16Array(this.k.memory.buffer);
  }

  /** `prepareChipReference`'s result for window `win` of the union window's `pixels`. */
  prepare(pixels: Uint16Array, union: Window, win: Window, harmonize: boolean): ChipInput {
    const { width: w, height: h } = win;
    const n = w * h;
    // Layout: one band's rows (uint16), the nodata bytes, the 12 float32 planes.
    const nd = align(2 * n, 16);
    const dn = align(nd + n, 16);
    this.reserve(dn + BANDS * 4 * n);
    const staging = this.u16;
    const plane = union.width * union.height;
    const dx = win.x - union.x;
    const dy = win.y - union.y;
    this.u8.fill(0, nd, nd + n);
    for (let b = 0; b < BANDS; b++) {
      // TypedArray.set of a subarray: about half the cost of Buffer.copy a row (measured).
      for (let r = 0; r < h; r++) {
        const s = b * plane + (dy + r) * union.width + dx;
        staging.set(pixels.subarray(s, s + w), r * w);
      }
      this.k.prep(0, dn + b * 4 * n, nd, n, harmonize ? HARMONIZE_OFFSET : 0);
    }
    const buffer = this.k.memory.buffer;
    return { dn: new Float32Array(buffer, dn, BANDS * n), nodata: new Uint8Array(buffer, nd, n), valid: n - this.k.count(nd, n) };
  }

  /** Grows the memory to at least `bytes` (views from before a growth are detached). */
  private reserve(bytes: number): void {
    const have = this.k.memory.buffer.byteLength;
    if (bytes <= have) return;
    this.k.memory.grow(Math.ceil((bytes - have) / PAGE));
    this.u8 = new Uint8Array(this.k.memory.buffer);
    this.u16 = new Uint16Array(this.k.memory.buffer);
  }
}

const align = (x: number, a: number): number => Math.ceil(x / a) * a;
