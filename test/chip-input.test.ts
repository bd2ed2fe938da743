/**
 * The chip input kernel (worker/chip-input.ts): the WebAssembly SIMD path gives the JavaScript
 * reference's bits on real pixels (windows cut out of a union at an offset, widths that are not
 * a multiple of 8, harmonized or not, nodata in some bands), and the committed bytes are what the
 * .wat compiles to.
 */
import { describe, expect, test } from 'vitest';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import { ChipInputs, prepareChipReference } from '../worker/chip-input.ts';
import { KERNELS, kernelModule } from '../scripts/build-wasm.mjs';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SAMPLE } from './helpers/cli.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

describe('chip input', () => {
  test('the committed kernel is what its .wat compiles to', async () => {
    for (const k of KERNELS) expect(readFileSync(path.join(ROOT, k.out), 'utf8')).toBe(await kernelModule(k.wat, k.name));
  });

  test('the WebAssembly kernel gives the reference bits on real pixels, with and without harmonizing, nodata included', async () => {
    const scene = await openScene(await resolveSource(SAMPLE));
    // A union partly outside the 1098x1098 scene: its right columns are 0 in every band (nodata).
    const union = { x: 700, y: 300, width: 437, height: 389 };
    const pixels = await scene.readWindow(union);
    const plane = union.width * union.height;
    // Some nodata in only one band, also in a SIMD tail and at a lane boundary.
    for (const [b, x, y] of [[3, 5, 7], [11, 8, 7], [0, 15, 100], [6, 372, 20], [2, 100, 388]] as const) pixels[b * plane + y * union.width + x] = 0;
    const inputs = new ChipInputs();
    const windows = [
      { x: 701, y: 301, width: 37, height: 5 },
      { x: 700, y: 300, width: 437, height: 389 },
      { x: 703, y: 302, width: 375, height: 376 },
      { x: 760, y: 310, width: 377, height: 9 },
      { x: 701, y: 301, width: 8, height: 3 },
    ];
    let sawNodata = false;
    for (const win of windows) {
      for (const harmonize of [false, true]) {
        const n = win.width * win.height;
        const dn = new Float32Array(12 * n);
        const nodata = new Uint8Array(n);
        const valid = prepareChipReference(pixels, union, win, harmonize, dn, nodata);
        const got = inputs.prepare(pixels, union, win, harmonize);
        const where = `${win.width}x${win.height} at ${win.x},${win.y}, harmonize ${harmonize}`;
        expect(got.valid, where).toBe(valid);
        expect(Buffer.from(got.nodata.buffer, got.nodata.byteOffset, n).equals(Buffer.from(nodata.buffer)), where).toBe(true);
        expect(Buffer.from(got.dn.buffer, got.dn.byteOffset, 4 * 12 * n).equals(Buffer.from(dn.buffer)), where).toBe(true);
        if (valid < n) sawNodata = true;
      }
    }
    // The test is about real values: most are above the harmonizing offset, and nodata occurred.
    expect(sawNodata).toBe(true);
    expect(pixels.filter((v) => v > 1000).length).toBeGreaterThan(pixels.length / 2);
  });
});
