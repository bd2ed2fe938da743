/** Inflating a real COG tile straight into a caller's buffer gives inflateSync's bytes, or says it cannot. */
import { open } from 'node:fs/promises';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { fromFile } from 'geotiff';
import { describe, expect, test } from 'vitest';
import { inflateInto } from '../raster/inflate-into.ts';
import { SAMPLE } from './helpers/cli.ts';

/** The compressed bytes of the first tile of a band of the real sample. */
async function realTile(band: string): Promise<Uint8Array> {
  const file = path.join(SAMPLE, `${band}.tif`);
  const image = await (await fromFile(file)).getImage();
  const fd = image.getFileDirectory();
  const offset = Number(((await fd.loadValue('TileOffsets')) as ArrayLike<number>)[0]);
  const length = Number(((await fd.loadValue('TileByteCounts')) as ArrayLike<number>)[0]);
  const h = await open(file);
  try {
    const raw = new Uint8Array(length);
    await h.read(raw, 0, length, offset);
    return raw;
  } finally {
    await h.close();
  }
}

describe('inflateInto', () => {
  test('a real tile comes out as inflateSync gives it, into an exact or a larger (shared) buffer', async () => {
    for (const band of ['B04', 'B11']) {
      const raw = await realTile(band);
      const want = inflateSync(raw);
      const exact = new Uint8Array(new SharedArrayBuffer(want.length));
      expect(inflateInto(raw, exact)).toBe(want.length);
      expect(Buffer.compare(Buffer.from(exact), want)).toBe(0);
      const slot = new Uint8Array(new SharedArrayBuffer(want.length + 4096), 1024, want.length + 100);
      expect(inflateInto(raw, slot)).toBe(want.length);
      expect(Buffer.compare(Buffer.from(slot.subarray(0, want.length)), want)).toBe(0);
    }
  });

  test('a buffer too small is refused (null), not filled with part of the tile', async () => {
    const raw = await realTile('B04');
    const size = inflateSync(raw).length;
    expect(inflateInto(raw, new Uint8Array(size - 1))).toBeNull();
    expect(inflateInto(raw, new Uint8Array(size / 2))).toBeNull();
  });

  test('corrupt and truncated streams throw, and the next tile inflates again', async () => {
    const raw = await realTile('B04');
    const want = inflateSync(raw);
    const corrupt = raw.slice();
    for (let i = 64; i < 96; i++) corrupt[i] ^= 0x5a;
    const out = new Uint8Array(want.length);
    expect(() => inflateSync(corrupt)).toThrow();
    expect(() => inflateInto(corrupt, out)).toThrow();
    expect(() => inflateInto(raw.subarray(0, raw.length >> 1), out)).toThrow(/unexpected end/);
    expect(inflateInto(raw, out)).toBe(want.length);
    expect(Buffer.compare(Buffer.from(out), want)).toBe(0);
  });
});
