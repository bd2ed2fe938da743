import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import * as zlib from 'node:zlib';
import { fromFile } from 'geotiff';
import { afterAll, describe, expect, test } from 'vitest';
import { readGeoTiffMetadata, writeGeoTiff } from '../raster/geotiff-writer.ts';
import { encodePng, tableCrc32 } from '../raster/png.ts';
import { geoInfoOf, openTiff, readSamples, closeTiff } from '../raster/tiff-file.ts';
import type { GeoInfo } from '../raster/types.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { validateCog } from './helpers/gdal.ts';

const PY = '/usr/bin/python3';
const hasGdal = existsSync(PY) && spawnSync(PY, ['-c', 'from osgeo import gdal'], { stdio: 'ignore' }).status === 0;
const OMNI = '/work/shared/data/mask-T19GBQ-omnicloudmask';
const omniMask = existsSync(OMNI) ? path.join(OMNI, readdirSync(OMNI).find((n) => n.endsWith('.tif'))!) : null;

const tmp = mkdtempSync(path.join(tmpdir(), 'raster-writer-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs a Python snippet with GDAL; `ds(path)` opens a dataset, `md5(path, band)` hashes a band's pixels. */
function gdalPy(body: string): string {
  const prelude = [
    'from osgeo import gdal',
    'import hashlib, json, numpy as np',
    'gdal.UseExceptions()',
    'def md5(p, b=1):',
    '    ds = gdal.Open(p)',
    '    return hashlib.md5(np.ascontiguousarray(ds.GetRasterBand(b).ReadAsArray()).tobytes()).hexdigest()',
  ].join('\n');
  return execFileSync(PY, ['-c', `${prelude}\n${body}`], { encoding: 'utf8' }).trim();
}

const md5 = (a: ArrayBufferView): string => createHash('md5').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

const GEO: GeoInfo = {
  width: 700,
  height: 600,
  origin: [199980, 2800020],
  pixelSize: [100, 100],
  epsg: 32629,
  geoKeyDirectory: null,
  geoAsciiParams: null,
  geoDoubleParams: null,
};

function pattern<T extends Uint8Array | Float32Array>(a: T, f: (x: number, y: number) => number, w: number): T {
  for (let i = 0; i < a.length; i++) a[i] = f(i % w, Math.floor(i / w));
  return a;
}

async function readBack(file: string): Promise<{ values: ArrayLike<number>[]; tile: number[] }> {
  const tiff = await fromFile(file);
  const image = await tiff.getImage(0);
  const values = Array.from((await image.readRasters({ interleave: false })) as unknown as ArrayLike<number>[]);
  const tile = [image.getTileWidth(), image.getTileHeight()];
  await tiff.close();
  return { values, tile };
}

describe('writeGeoTiff', () => {
  test('uint8: tiled DEFLATE with partial edge tiles reads back equal with geotiff.js and GDAL', async () => {
    const data = pattern(new Uint8Array(700 * 600), (x, y) => ((x >> 4) ^ (y >> 3)) & 3, 700);
    const file = path.join(tmp, 'u8.tif');
    await writeGeoTiff(file, { width: 700, height: 600, data, geo: GEO, metadata: { ICM_TEST: 'yes' } });
    const back = await readBack(file);
    expect(back.tile).toEqual([512, 512]);
    expect(md5(back.values[0] as Uint8Array)).toBe(md5(data));
    if (!hasGdal) return;
    const info = JSON.parse(execFileSync('gdalinfo', ['-json', file], { encoding: 'utf8' }));
    expect(info.size).toEqual([700, 600]);
    expect(info.bands[0].block).toEqual([512, 512]);
    expect(info.bands[0].type).toBe('Byte');
    expect(info.metadata.IMAGE_STRUCTURE.COMPRESSION).toBe('DEFLATE');
    expect(info.geoTransform).toEqual([199980, 100, 0, 2800020, 0, -100]);
    expect(info.stac['proj:epsg']).toBe(32629);
    expect(info.metadata[''].ICM_TEST).toBe('yes');
    expect(gdalPy(`print(md5(${JSON.stringify(file)}))`)).toBe(md5(data));
  });

  test('float32 with nodata, and 12-band uint16 with predictor 2, read back equal', async () => {
    const f32 = pattern(new Float32Array(700 * 600), (x, y) => Math.sin(x / 7) * Math.cos(y / 5) + x * 1e-3, 700);
    const ffile = path.join(tmp, 'f32.tif');
    await writeGeoTiff(ffile, { width: 700, height: 600, data: f32, geo: GEO, nodata: -9999, tileSize: 256 });
    const fb = await readBack(ffile);
    expect(fb.tile).toEqual([256, 256]);
    expect(md5(fb.values[0] as Float32Array)).toBe(md5(f32));

    const u16 = new Uint16Array(12 * 300 * 200);
    for (let i = 0; i < u16.length; i++) u16[i] = (i * 7919) % 65536;
    const ufile = path.join(tmp, 'u16.tif');
    await writeGeoTiff(ufile, { width: 300, height: 200, bands: 12, data: u16, geo: { ...GEO, width: 300, height: 200 }, nodata: 0, predictor: 2 });
    const ub = await readBack(ufile);
    expect(ub.values).toHaveLength(12);
    ub.values.forEach((band, b) => expect(md5(band as Uint16Array), `band ${b + 1}`).toBe(md5(u16.subarray(b * 60000, (b + 1) * 60000))));
    if (!hasGdal) return;
    const out = JSON.parse(gdalPy(`
ds = gdal.Open(${JSON.stringify(ffile)}); b = ds.GetRasterBand(1)
u = gdal.Open(${JSON.stringify(ufile)})
print(json.dumps({"f": md5(${JSON.stringify(ffile)}), "nodata": b.GetNoDataValue(), "type": gdal.GetDataTypeName(b.DataType),
  "u": [md5(${JSON.stringify(ufile)}, i) for i in (1, 7, 12)], "bands": u.RasterCount, "pred": u.GetMetadata("IMAGE_STRUCTURE").get("PREDICTOR")}))`));
    expect(out).toEqual({
      f: md5(f32),
      nodata: -9999,
      type: 'Float32',
      u: [0, 6, 11].map((b) => md5(u16.subarray(b * 60000, (b + 1) * 60000))),
      bands: 12,
      pred: '2',
    });
  });

  test('metadata items round-trip, GDAL reads the same values', async () => {
    const metadata = { ICM_PARAMS: JSON.stringify({ cloud_thr: 0.3, note: 'a<b & "c"' }), ICM_RUN_KEY: 'abc_123', EMPTY: '' };
    const file = path.join(tmp, 'meta.tif');
    await writeGeoTiff(file, { width: 20, height: 10, data: new Uint8Array(200), geo: { ...GEO, width: 20, height: 10 }, metadata });
    expect(await readGeoTiffMetadata(file)).toEqual(metadata);
    if (!hasGdal) return;
    const md = JSON.parse(gdalPy(`print(json.dumps(gdal.Open(${JSON.stringify(file)}).GetMetadata()))`));
    expect(md.ICM_PARAMS).toBe(metadata.ICM_PARAMS);
    expect(md.ICM_RUN_KEY).toBe('abc_123');
  });

  test('a failing write leaves nothing behind', async () => {
    const missingDir = path.join(tmp, 'no-such-dir');
    const err = await writeGeoTiff(path.join(missingDir, 'x.tif'), { width: 4, height: 4, data: new Uint8Array(16), geo: GEO }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudMaskError);
    expect((err as CloudMaskError).code).toBe('OUTPUT_FAILED');
    expect((err as CloudMaskError).message).toContain(missingDir);
    expect(existsSync(missingDir)).toBe(false);
    // A write over an existing file replaces it; no temporary file remains.
    const file = path.join(tmp, 'replace.tif');
    await writeGeoTiff(file, { width: 4, height: 4, data: new Uint8Array(16), geo: GEO });
    await writeGeoTiff(file, { width: 4, height: 4, data: new Uint8Array(16).fill(9), geo: GEO });
    expect(Array.from((await readBack(file)).values[0]!)).toEqual(new Array(16).fill(9));
    expect(readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  test('bad options are rejected before touching the disk', async () => {
    const file = path.join(tmp, 'bad.tif');
    await expect(writeGeoTiff(file, { width: 4, height: 4, data: new Uint8Array(15), geo: GEO })).rejects.toThrow(/15 values/);
    await expect(writeGeoTiff(file, { width: 4, height: 4, data: new Float32Array(16), geo: GEO, predictor: 2 })).rejects.toThrow(/predictor 2/);
    expect(existsSync(file)).toBe(false);
  });

  test.skipIf(!omniMask)('a real 10980x10980 uint8 mask: LZW read equals GDAL; the COG written (max overviews) is exact and valid', async () => {
    const src = await openTiff(omniMask!, 'product mask');
    const geo = await geoInfoOf(src);
    const [mask] = await readSamples(src, { x: 0, y: 0, width: src.width, height: src.height }, [0]);
    await closeTiff(src.tiff);
    const data = mask as Uint8Array;
    expect(data.length).toBe(10980 * 10980);
    const file = path.join(tmp, 'big.tif');
    const t0 = performance.now();
    await writeGeoTiff(file, { width: 10980, height: 10980, data, geo, overviews: 'max' });
    console.log(`wrote a 10980x10980 uint8 COG (5 max overviews) in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    if (!hasGdal) return;
    const [orig, written, ovr] = gdalPy(`print(md5(${JSON.stringify(omniMask)})); print(md5(${JSON.stringify(file)}))
ds = gdal.Open(${JSON.stringify(file)}); b = ds.GetRasterBand(1); a = b.ReadAsArray()
o = b.GetOverview(4).ReadAsArray(); p = np.zeros((o.shape[0] * 32, o.shape[1] * 32), np.uint8); p[:10980, :10980] = a
print(json.dumps([b.GetOverviewCount(), bool((p.reshape(o.shape[0], 32, o.shape[1], 32).max(axis=(1, 3)) == o).all())]))`).split('\n');
    expect(orig).toBe(md5(data)); // our LZW decoder agrees with GDAL
    expect(written).toBe(md5(data));
    expect(JSON.parse(ovr!)).toEqual([5, true]);
    const v = validateCog(file);
    expect(v.clean, v.output).toBe(true);
  });
});

describe('encodePng', () => {
  test('RGB and RGBA images decode with GDAL; CRCs are right', () => {
    const crcInput = Buffer.from('IHDR and friends');
    if (typeof zlib.crc32 === 'function') expect(tableCrc32(crcInput)).toBe(zlib.crc32(crcInput));
    const rgb = Uint8Array.from({ length: 5 * 3 * 3 }, (_, i) => (i * 37) % 256);
    const png = encodePng(5, 3, rgb);
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(png.readUInt32BE(16)).toBe(5);
    expect(png.readUInt32BE(20)).toBe(3);
    const idatLen = png.readUInt32BE(33);
    expect(inflateSync(png.subarray(41, 41 + idatLen)).length).toBe(3 * (5 * 3 + 1));
    expect(() => encodePng(5, 3, new Uint8Array(7))).toThrow(RangeError);
    if (!hasGdal) return;
    const file = path.join(tmp, 'x.png');
    writeFileSync(file, png);
    const back = gdalPy(`ds = gdal.Open(${JSON.stringify(file)}); print(ds.RasterCount, ds.RasterXSize, ds.RasterYSize, ds.ReadAsArray().transpose(1, 2, 0).tobytes().hex())`);
    expect(back).toBe(`3 5 3 ${Buffer.from(rgb).toString('hex')}`);
    const rgba = Uint8Array.from({ length: 2 * 2 * 4 }, (_, i) => i * 15);
    writeFileSync(file, encodePng(2, 2, rgba));
    const backA = gdalPy(`ds = gdal.Open(${JSON.stringify(file)}); print(ds.RasterCount, ds.ReadAsArray().transpose(1, 2, 0).tobytes().hex())`);
    expect(backA).toBe(`4 ${Buffer.from(rgba).toString('hex')}`);
  });
});
