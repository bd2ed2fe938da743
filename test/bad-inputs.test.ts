/** Bad inputs: each a clear one-line error naming what and where, a non-zero exit, and no output. */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import type { GeoInfo } from '../raster/types.ts';
import { runCli, SAMPLE } from './helpers/cli.ts';

let tmp: string;
let geo: GeoInfo;
let stack: Uint16Array;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-bad-'));
  const reader = await openScene(await resolveSource(SAMPLE));
  geo = reader.geo;
  stack = await reader.readWindow({ x: 0, y: 0, width: geo.width, height: geo.height });
  await reader.close();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function expectFailure(name: string, args: string[], message: RegExp): Promise<void> {
  const outDir = path.join(tmp, `out-${name}`);
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, 'mask.tif');
  const r = await runCli(['run', '--out', out, '--quiet', ...args]);
  expect(r.code, r.stderr).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines.at(-1)).toMatch(/^improve-cloud-mask: error \[[A-Z_]+\]: /);
  expect(lines.at(-1)).toMatch(message);
  expect(existsSync(out)).toBe(false);
  expect(readdirSync(outDir)).toEqual([]);
}

describe('bad inputs give a clear error and no output', () => {
  test('missing file', async () => {
    await expectFailure('missing', ['--s2-raster', path.join(tmp, 'nope.tif'), '--product-mask', 'none'], /INPUT_NOT_FOUND.*nope\.tif/);
  });

  test('truncated TIFF', async () => {
    const full = path.join(tmp, 'full.tif');
    await writeGeoTiff(full, { width: geo.width, height: geo.height, bands: 12, data: stack, geo });
    const bytes = readFileSync(full);
    const cut = path.join(tmp, 'truncated.tif');
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expectFailure('truncated', ['--s2-raster', cut, '--product-mask', 'none'], /truncated\.tif.*truncated|truncated.*truncated\.tif/i);
  });

  test('11 bands', async () => {
    const f = path.join(tmp, 'eleven.tif');
    await writeGeoTiff(f, { width: geo.width, height: geo.height, bands: 11, data: stack.subarray(0, 11 * geo.width * geo.height), geo });
    await expectFailure('eleven', ['--s2-raster', f, '--product-mask', 'none'], /eleven\.tif.*11 bands/);
  });

  test('float bands', async () => {
    const f = path.join(tmp, 'float.tif');
    await writeGeoTiff(f, { width: geo.width, height: geo.height, bands: 12, data: Float32Array.from(stack), geo });
    await expectFailure('float', ['--s2-raster', f, '--product-mask', 'none'], /float\.tif.*(float|uint16)/i);
  });

  test('a product mask on another grid', async () => {
    const f = path.join(tmp, 'mask-20m.tif');
    const small: GeoInfo = { ...geo, width: 549, height: 549, pixelSize: [200, 200] };
    await writeGeoTiff(f, { width: 549, height: 549, data: new Uint8Array(549 * 549), geo: small });
    await expectFailure('grid', ['--s2-raster', SAMPLE, '--product-mask', f], /GRID_MISMATCH.*mask-20m\.tif/);
  });

  test('a product mask whose pixels do not decode (read beside the chips): the run fails with it, no output', async () => {
    const f = path.join(tmp, 'mask-corrupt.tif');
    const data = new Uint8Array(geo.width * geo.height);
    for (let i = 0; i < data.length; i++) data[i] = stack[i]! > 1500 ? 1 : 0;
    await writeGeoTiff(f, { width: geo.width, height: geo.height, data, geo });
    const image = await (await fromFile(f)).getImage();
    const offset = Number(((await image.fileDirectory.loadValue('TileOffsets')) as ArrayLike<number>)[0]);
    const count = Number(((await image.fileDirectory.loadValue('TileByteCounts')) as ArrayLike<number>)[0]);
    const bytes = readFileSync(f);
    for (let i = offset + Math.floor(count / 2); i < offset + Math.floor(count / 2) + 32; i++) bytes[i] = bytes[i]! ^ 0x5a;
    writeFileSync(f, bytes);
    await expectFailure('mask-corrupt', ['--s2-raster', SAMPLE, '--product-mask', f], /CORRUPT_INPUT.*mask-corrupt\.tif/);
  });

  test('a non-raster file', async () => {
    const f = path.join(tmp, 'notes.tif');
    writeFileSync(f, 'these are not pixels\n');
    await expectFailure('nonraster', ['--s2-raster', f, '--product-mask', 'none'], /BAD_INPUT.*notes\.tif/);
  });

  test('an unknown model name', async () => {
    await expectFailure('model', ['--s2-raster', SAMPLE, '--product-mask', 'none', '--cloud-model', 'no-such-model.onnx'], /BAD_MODEL.*no-such-model\.onnx/);
  });

  test('a threshold outside [0, 1]', async () => {
    await expectFailure('thr', ['--s2-raster', SAMPLE, '--product-mask', 'none', '--cloud-thr', '1.5'], /BAD_OPTION.*cloud_thr.*\[0, 1\]/);
  });

  test('a directory with a band missing', async () => {
    const dir = path.join(tmp, 'partial');
    mkdirSync(dir);
    for (const f of readdirSync(SAMPLE)) if (f !== 'B05.tif' && f.endsWith('.tif')) copyFileSync(path.join(SAMPLE, f), path.join(dir, f));
    await expectFailure('partial', ['--s2-raster', dir, '--product-mask', 'none'], /BAD_INPUT.*B05/);
  });
});
