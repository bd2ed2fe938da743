import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { BAND_NAMES } from '../raster/bands.ts';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { offsetStatus, readProductMask, readSafeMetadata } from '../raster/product-mask.ts';
import { writeQuicklook } from '../raster/quicklook.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import type { GeoInfo, SceneReader, SceneSource, Window } from '../raster/types.ts';
import { CloudMaskError, type ErrorCode } from '../shared/errors.ts';
import { startStaticServer, type StaticServer } from './helpers/http-server.ts';

const DATA = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../shared/data');
const SAMPLE = path.join(DATA, 's2-l2a-29RKH');
const ITEM = 'S2A_29RKH_20200219_0_L2A.json';
const SAFE_ROOT = path.join(DATA, 's2-l2a-T01UBT-safe');
const SAFE = path.join(SAFE_ROOT, 'S2B_MSIL2A_20230122T231849_N0400_R087_T01UBT_20230124T042703.SAFE');
const PY = '/usr/bin/python3';
const hasGdal = existsSync(PY) && spawnSync(PY, ['-c', 'from osgeo import gdal'], { stdio: 'ignore' }).status === 0;

const tmp = mkdtempSync(path.join(tmpdir(), 'raster-'));
const readers: SceneReader[] = [];
let server: StaticServer;
let folder: SceneReader;
let full: Uint16Array;

async function open(input: string | SceneSource): Promise<SceneReader> {
  const r = await openScene(typeof input === 'string' ? await resolveSource(input) : input);
  readers.push(r);
  return r;
}

/** A folder of links to the sample's band files, with some replaced or left out. */
function bandFolder(name: string, replace: Record<string, string | null> = {}): string {
  const dir = path.join(tmp, name);
  mkdirSync(dir);
  for (const b of [...BAND_NAMES, 'SCL']) {
    if (b in replace) {
      if (replace[b]) copyFileSync(replace[b]!, path.join(dir, `${b}.tif`));
    } else {
      symlinkSync(path.join(SAMPLE, `${b}.tif`), path.join(dir, `${b}.tif`));
    }
  }
  return dir;
}

async function expectCode(p: Promise<unknown>, code: ErrorCode, ...words: (string | RegExp)[]): Promise<CloudMaskError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(CloudMaskError);
  const e = err as CloudMaskError;
  expect(e.code, e.message).toBe(code);
  expect(e.message).not.toContain('\n');
  for (const w of words) expect(e.message).toMatch(w);
  return e;
}

beforeAll(async () => {
  server = await startStaticServer(tmp);
  folder = await open(SAMPLE);
  full = await folder.readWindow({ x: 0, y: 0, width: 1098, height: 1098 });
});

afterAll(async () => {
  await Promise.all(readers.map((r) => r.close()));
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A fetch that labels everything JSON, as a STAC API does for its items. */
const jsonTyped: typeof fetch = async (input, init) => {
  const res = await fetch(input, init);
  const headers = new Headers(res.headers);
  headers.set('content-type', 'application/geo+json');
  return new Response(await res.arrayBuffer(), { status: res.status, headers });
};

const EXPECTED_GEO = { width: 1098, height: 1098, origin: [199980, 2800020], pixelSize: [100, 100], epsg: 32629 };

function crop(win: Window): Uint16Array {
  const out = new Uint16Array(12 * win.width * win.height);
  for (let b = 0; b < 12; b++) {
    for (let j = 0; j < win.height; j++) {
      for (let i = 0; i < win.width; i++) {
        const x = win.x + i;
        const y = win.y + j;
        const inside = x >= 0 && y >= 0 && x < 1098 && y < 1098;
        out[(b * win.height + j) * win.width + i] = inside ? full[(b * 1098 + y) * 1098 + x]! : 0;
      }
    }
  }
  return out;
}

describe('scene sources', () => {
  const windows: Window[] = [
    { x: 0, y: 0, width: 512, height: 512 },
    { x: 700, y: 650, width: 512, height: 512 }, // past the bottom-right edge
    { x: -7, y: -3, width: 40, height: 30 }, // past the top-left edge
    { x: 333, y: 517, width: 77, height: 91 },
  ];

  test('the folder reader: 12 bands on the 10 m grid, window reads equal crops of the full read', async () => {
    expect(folder.geo).toMatchObject(EXPECTED_GEO);
    expect(folder.metadata).toEqual({
      processingBaseline: '02.14',
      boaOffsetApplied: false,
      id: 'S2A_29RKH_20200219_0_L2A',
      datetime: '2020-02-19T11:34:25.405000Z',
      stacItem: path.join(SAMPLE, ITEM),
    });
    expect(folder.source.kind).toBe('bands');
    for (const win of windows) expect(Buffer.from((await folder.readWindow(win)).buffer).equals(Buffer.from(crop(win).buffer)), JSON.stringify(win)).toBe(true);
    // No band is empty, and the scene has no nodata.
    for (let b = 0; b < 12; b++) expect(full.subarray(b * 1098 * 1098, (b + 1) * 1098 * 1098).every((v) => v > 0), BAND_NAMES[b]).toBe(true);
    // Band subsets come in the order asked for.
    const win = windows[3]!;
    const rgb = await folder.readWindow(win, [3, 2, 1]);
    const all = crop(win);
    const n = win.width * win.height;
    expect(Array.from(rgb.subarray(0, n))).toEqual(Array.from(all.subarray(3 * n, 4 * n)));
    expect(Array.from(rgb.subarray(2 * n))).toEqual(Array.from(all.subarray(n, 2 * n)));
  });

  test('STAC item (local, over http) and a stacked GeoTIFF read exactly like the folder', async () => {
    const stacked = path.join(tmp, 'stacked.tif');
    await writeGeoTiff(stacked, { width: 1098, height: 1098, bands: 12, data: full, geo: folder.geo, nodata: 0 });
    // Over http: the item and links to the band files are served by a local server, hrefs absolute.
    const item = JSON.parse(readFileSync(path.join(SAMPLE, ITEM), 'utf8'));
    for (const a of Object.values(item.assets) as { href: string }[]) a.href = `${server.url}/${path.basename(a.href)}`;
    writeFileSync(path.join(tmp, 'item.json'), JSON.stringify(item));
    for (const b of [...BAND_NAMES, 'SCL']) symlinkSync(path.join(SAMPLE, `${b}.tif`), path.join(tmp, `${b}.tif`));

    const local = await open(path.join(SAMPLE, ITEM));
    const httpSource = await resolveSource(`${server.url}/item.json`);
    expect(httpSource.kind === 'bands' && httpSource.bands[1]).toBe(`${server.url}/B02.tif`);
    const http = await open(httpSource);
    const stack = await open(stacked);
    // The local item prefers the band files beside it over its public-bucket hrefs.
    expect(local.source.kind === 'bands' && local.source.bands[1]).toBe(path.join(SAMPLE, 'B02.tif'));
    for (const r of [local, http, stack]) {
      expect(r.geo).toEqual(folder.geo);
      for (const win of windows) {
        expect(Buffer.from((await r.readWindow(win)).buffer).equals(Buffer.from(crop(win).buffer)), `${r.source.kind} ${JSON.stringify(win)}`).toBe(true);
      }
    }
    expect(http.metadata.processingBaseline).toBe('02.14');
    // URLs without a .json or .tif suffix (STAC API items) are told apart by content type.
    writeFileSync(path.join(tmp, 'item-no-suffix'), JSON.stringify(item));
    copyFileSync(stacked, path.join(tmp, 'stacked-no-suffix'));
    expect((await resolveSource(`${server.url}/item-no-suffix`, { fetch: jsonTyped })).kind).toBe('bands');
    expect(await resolveSource(`${server.url}/stacked-no-suffix`)).toEqual({ kind: 'stacked', href: `${server.url}/stacked-no-suffix` });
    expect(server.requests.some((r) => r.startsWith('GET /B05.tif bytes='))).toBe(true);
  });

  test.skipIf(!hasGdal)('a FarmVibes-style stacked file (GDAL: ZSTD, predictor 2, pixel-interleaved) reads the same', async () => {
    const zstd = path.join(tmp, 'stacked-zstd.tif');
    const opts = ['-q', '-co', 'TILED=YES', '-co', 'COMPRESS=ZSTD', '-co', 'ZSTD_LEVEL=9', '-co', 'PREDICTOR=2', '-co', 'INTERLEAVE=PIXEL'];
    execFileSync('gdal_translate', [...opts, path.join(tmp, 'stacked.tif'), zstd]);
    const r = await open(zstd);
    expect(r.geo).toEqual(folder.geo);
    for (const win of windows) expect(Buffer.from((await r.readWindow(win)).buffer).equals(Buffer.from(crop(win).buffer)), JSON.stringify(win)).toBe(true);
  });

  test('a SAFE folder (or its parent) resolves to its GeoTIFF bands and metadata', async () => {
    const src = await resolveSource(SAFE_ROOT);
    expect(src.kind).toBe('bands');
    if (src.kind !== 'bands') return;
    expect(src.bands[0]).toMatch(/_B01_60m\.tif$/);
    expect(src.bands[1]).toMatch(/R10m\/.*_B02_10m\.tif$/);
    expect(src.bands[8]).toMatch(/R20m\/.*_B8A_20m\.tif$/);
    expect(src.scl).toMatch(/_SCL_20m\.tif$/);
    expect(src.metadata.processingBaseline).toBe('04.00');
    const r = await open(src);
    expect(r.geo).toMatchObject({ width: 100, height: 100, epsg: 32601 });
    const mask = await readProductMask('scl', r);
    expect(mask!.length).toBe(100 * 100);
  });

  test.skipIf(!hasGdal)('bilinear upsampling matches gdalwarp -r bilinear within 1 DN (ties only)', () => {
    const stacked = path.join(tmp, 'stacked.tif');
    const warped = path.join(tmp, 'b05-warped.tif');
    execFileSync('gdalwarp', ['-q', '-r', 'bilinear', '-tr', '100', '100', '-te', '199980', '2690220', '309780', '2800020', path.join(SAMPLE, 'B05.tif'), warped]);
    const out = execFileSync(PY, ['-c', `
from osgeo import gdal
import numpy as np
s = gdal.Open(${JSON.stringify(stacked)}); w = gdal.Open(${JSON.stringify(warped)})
d = np.abs(s.GetRasterBand(5).ReadAsArray().astype(int) - w.GetRasterBand(1).ReadAsArray().astype(int))
print(int(d.max()), float((d > 0).mean()))`], { encoding: 'utf8' });
    const [maxDiff, frac] = out.trim().split(' ').map(Number);
    expect(maxDiff).toBeLessThanOrEqual(1);
    expect(frac).toBeLessThan(0.05);
  });
});

describe('product mask and baseline', () => {
  test("'scl' gives a 0/1 mask on the 10 m grid with some cloud; 'none' gives null", async () => {
    const mask = await readProductMask('scl', folder);
    expect(mask!.length).toBe(1098 * 1098);
    let n = 0;
    let other = 0;
    for (const v of mask!) {
      if (v > 1) other++;
      n += v;
    }
    expect(other).toBe(0);
    expect(n / mask!.length).toBeGreaterThan(0.01);
    expect(n / mask!.length).toBeLessThan(0.1);
    expect(await readProductMask('none', folder)).toBeNull();
  });

  test('a mask file on the scene grid: nonzero is cloud; on another grid: GRID_MISMATCH naming both', async () => {
    const data = new Uint8Array(1098 * 1098);
    data[5] = 1;
    data[6] = 2;
    data[7] = 100;
    const good = path.join(tmp, 'mask-good.tif');
    await writeGeoTiff(good, { width: 1098, height: 1098, data, geo: folder.geo, nodata: 100 });
    const mask = await readProductMask(good, folder);
    expect(Array.from(mask!.subarray(4, 9))).toEqual([0, 1, 1, 1, 0]);
    const coarse: GeoInfo = { ...folder.geo, width: 549, height: 549, pixelSize: [200, 200] };
    const bad = path.join(tmp, 'mask-200m.tif');
    await writeGeoTiff(bad, { width: 549, height: 549, data: new Uint8Array(549 * 549), geo: coarse });
    await expectCode(readProductMask(bad, folder), 'GRID_MISMATCH', bad, /549x549/, /1098x1098/);
    await expectCode(readProductMask(path.join(tmp, 'nope.tif'), folder), 'INPUT_NOT_FOUND', 'nope.tif');
  });

  test("'scl' without an SCL band is BAD_INPUT", async () => {
    const stack = await open(path.join(tmp, 'stacked.tif'));
    await expectCode(readProductMask('scl', stack), 'BAD_INPUT', /SCL/, 'stacked.tif');
  });

  test('baseline detection: SAFE 04.00 carries the offset, the 29RKH item (02.14) does not', async () => {
    const safe = await readSafeMetadata(SAFE);
    expect(safe).toEqual({ processingBaseline: '04.00', boaOffsetApplied: false, id: path.basename(SAFE, '.SAFE'), datetime: '2023-01-22T23:18:49.024Z' });
    expect(offsetStatus(safe)).toEqual({ baseline: '04.00', offsetInData: true });
    expect(offsetStatus(folder.metadata)).toEqual({ baseline: '02.14', offsetInData: false });
    expect(offsetStatus({ processingBaseline: '05.10', boaOffsetApplied: true, id: null }).offsetInData).toBe(false);
    expect(offsetStatus({ processingBaseline: null, boaOffsetApplied: null, id: null }).offsetInData).toBe(false);
  });
});

describe('bad inputs fail with the right code and a message naming the file', () => {
  test('missing file, missing folder band, missing URL', async () => {
    const missing = path.join(tmp, 'missing.tif');
    await expectCode(resolveSource(missing), 'INPUT_NOT_FOUND', missing);
    await expectCode(openScene({ kind: 'stacked', href: missing }), 'INPUT_NOT_FOUND', missing);
    const noB8A = bandFolder('no-b8a', { B8A: null });
    await expectCode(resolveSource(noB8A), 'BAD_INPUT', /band B8A/, noB8A);
    await expectCode(openScene({ kind: 'stacked', href: `${server.url}/absent.tif` }), 'INPUT_NOT_FOUND', /absent\.tif/, /404/);
    await expectCode(resolveSource(`${server.url}/absent.json`), 'INPUT_NOT_FOUND', /absent\.json/);
  });

  test('truncated band file', async () => {
    const cut = path.join(tmp, 'B02-cut.tif');
    const bytes = readFileSync(path.join(SAMPLE, 'B02.tif'));
    writeFileSync(cut, bytes.subarray(0, bytes.length >> 1));
    const dir = bandFolder('truncated', { B02: cut });
    await expectCode(openScene(await resolveSource(dir)), 'BAD_INPUT', /band B02/, /truncated/, path.join(dir, 'B02.tif'));
  });

  test('stacked file with 11 bands', async () => {
    const file = path.join(tmp, 'eleven.tif');
    await writeGeoTiff(file, { width: 64, height: 64, bands: 11, data: new Uint16Array(11 * 64 * 64), geo: { ...folder.geo, width: 64, height: 64 } });
    await expectCode(openScene(await resolveSource(file)), 'BAD_INPUT', /11 bands/, file);
  });

  test('float32 band file', async () => {
    const f = path.join(tmp, 'B05-float.tif');
    await writeGeoTiff(f, { width: 549, height: 549, data: new Float32Array(549 * 549), geo: { ...folder.geo, width: 549, height: 549, pixelSize: [200, 200] } });
    const dir = bandFolder('float', { B05: f });
    await expectCode(openScene(await resolveSource(dir)), 'BAD_INPUT', /band B05/, /float32/, path.join(dir, 'B05.tif'));
  });

  test('band on another grid', async () => {
    const f = path.join(tmp, 'B06-500.tif');
    await writeGeoTiff(f, { width: 500, height: 500, data: new Uint16Array(500 * 500).fill(1), geo: { ...folder.geo, width: 500, height: 500, pixelSize: [200, 200] } });
    const dir = bandFolder('offgrid', { B06: f });
    await expectCode(openScene(await resolveSource(dir)), 'BAD_INPUT', /band B06/, /grid of B02/);
  });

  test('a text file named .tif', async () => {
    const f = path.join(tmp, 'notes.tif');
    writeFileSync(f, 'this is not a raster\n');
    await expectCode(openScene(await resolveSource(f)), 'BAD_INPUT', /not a TIFF/, f);
  });
});

describe('quick-look', () => {
  test('writes a PNG whose long side fits maxSide', async () => {
    const cloud = (await readProductMask('scl', folder))!;
    const shadow = new Uint8Array(1098 * 1098);
    shadow.fill(1, 0, 1098 * 50);
    const file = path.join(tmp, 'quicklook.png');
    await writeQuicklook(file, { reader: folder, cloud, shadow, width: 1098, height: 1098, maxSide: 256 });
    const png = readFileSync(file);
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR');
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([220, 220]); // step ceil(1098 / 256) = 5
    await expectCode(writeQuicklook(path.join(tmp, 'no-dir', 'q.png'), { reader: folder, cloud, shadow, width: 1098, height: 1098 }), 'OUTPUT_FAILED', /no-dir/);
  });
});
