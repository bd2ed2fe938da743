/**
 * The writer's Cloud-Optimized GeoTIFFs: GDAL's own validator passes them with no warning, GDAL
 * reads the overviews each resampling promises, the band description, colour table, class names
 * and predictors are what GDAL reports, and geotiff.js still reads the full resolution exactly.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, describe, expect, test } from 'vitest';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { buildOverviews, isPacked, overviewSizes } from '../raster/overviews.ts';
import { packMask, unpackMask } from '../shared/packed-mask.ts';
import type { GeoInfo } from '../raster/types.ts';
import { gdalinfo, gdalPy, hasGdal, validateCog } from './helpers/gdal.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'cog-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Odd sizes: every level has partial edge tiles and odd-sized halvings.
const W = 1301;
const H = 1099;
const GEO: GeoInfo = { width: W, height: H, origin: [199980, 2800020], pixelSize: [10, 10], epsg: 32629, geoKeyDirectory: null, geoAsciiParams: null, geoDoubleParams: null };

/** Sparse single cloud pixels: an overview that drops any of them is visibly wrong. */
function sparseMask(): Uint8Array {
  const m = new Uint8Array(W * H);
  let s = 12345;
  for (let i = 0; i < 900; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    m[s % m.length] = 1;
  }
  for (let y = 300; y < 420; y++) for (let x = 700; x < 900; x++) m[y * W + x] = 1;
  return m;
}

async function geotiffJs(file: string): Promise<ArrayLike<number>> {
  const tiff = await fromFile(file);
  const [band] = (await (await tiff.getImage(0)).readRasters({ interleave: false })) as unknown as ArrayLike<number>[];
  await tiff.close();
  return band!;
}

const npArray = (file: string, name: string): string => `np.fromfile(${JSON.stringify(file)}, dtype=np.${name}).reshape(${H}, ${W})`;

describe('overview levels', () => {
  test('halve until one tile holds the smallest, as GDAL sizes them', () => {
    expect(overviewSizes(10980, 10980, 512)).toEqual([[5490, 5490], [2745, 2745], [1373, 1373], [687, 687], [344, 344]]);
    expect(overviewSizes(512, 512, 512)).toEqual([]);
    expect(overviewSizes(513, 40, 512)).toEqual([[257, 20]]);
  });

  test.each(['bytes', 'bits'])('max from %s: a level-k pixel is 1 iff any full-resolution pixel of its 2^k block is', (form) => {
    const mask = sparseMask();
    const full = { width: W, height: H, data: form === 'bits' ? packMask(mask, W, H) : mask };
    const levels = buildOverviews(full, 1, 256, 'max');
    expect(levels.map((l) => [l.width, l.height])).toEqual(overviewSizes(W, H, 256));
    levels.forEach((lv, k) => {
      const f = 2 ** (k + 1);
      const data = isPacked(lv.data) ? unpackMask(lv.data) : lv.data;
      for (let j = 0; j < lv.height; j++) {
        for (let i = 0; i < lv.width; i++) {
          let any = 0;
          for (let y = j * f; y < Math.min(H, (j + 1) * f); y++) for (let x = i * f; x < Math.min(W, (i + 1) * f); x++) any |= mask[y * W + x]!;
          if (data[j * lv.width + i] !== any) throw new Error(`level ${k} pixel ${i},${j}: ${data[j * lv.width + i]} instead of ${any}`);
        }
      }
    });
  });
});

describe('a mask given as bits', () => {
  test('is written byte for byte as the same mask given as bytes (tiles, overviews, every offset)', async () => {
    for (const [w, h] of [[W, H], [1024, 512], [64, 33]] as const) {
      const mask = sparseMask().subarray(0, w * h);
      const geo = { ...GEO, width: w, height: h };
      const style = { overviews: 'max', bandDescriptions: ['cloud mask'], metadata: { ICM_X: '1' } } as const;
      await writeGeoTiff(path.join(tmp, 'from-bytes.tif'), { width: w, height: h, data: mask, geo, ...style });
      await writeGeoTiff(path.join(tmp, 'from-bits.tif'), { width: w, height: h, data: packMask(mask, w, h), geo, ...style });
      expect(readFileSync(path.join(tmp, 'from-bits.tif')).equals(readFileSync(path.join(tmp, 'from-bytes.tif'))), `${w}x${h}`).toBe(true);
    }
  });
});

describe.skipIf(!hasGdal)('COG files, checked with GDAL', () => {
  test('a uint8 mask with max overviews: valid COG without warnings, GDAL reads the same overviews', async () => {
    const data = sparseMask();
    const file = path.join(tmp, 'mask.tif');
    await writeGeoTiff(file, { width: W, height: H, data, geo: GEO, overviews: 'max', bandDescriptions: ['cloud mask'], metadata: { ICM_X: '1' } });
    const v = validateCog(file);
    expect(v.clean, v.output).toBe(true);
    const info = gdalinfo(file);
    expect(info.metadata.IMAGE_STRUCTURE).toMatchObject({ COMPRESSION: 'DEFLATE', LAYOUT: 'COG' });
    expect(info.bands[0].block).toEqual([512, 512]);
    expect(info.bands[0].description).toBe('cloud mask');
    expect(info.bands[0].overviews.map((o: { size: number[] }) => o.size)).toEqual([[651, 550], [326, 275]]);
    expect(info.metadata[''].ICM_X).toBe('1');
    expect(Array.from(await geotiffJs(file))).toEqual(Array.from(data));
    // GDAL's overview k against the max over 2^(k+1) blocks of the full image, computed in numpy.
    const raw = path.join(tmp, 'mask.u8');
    writeFileSync(raw, data);
    const out = gdalPy(`
a = ${npArray(raw, 'uint8')}
ds = gdal.Open(${JSON.stringify(file)}); b = ds.GetRasterBand(1)
res = [bool((a == b.ReadAsArray()).all())]
for k in range(b.GetOverviewCount()):
    f = 2 ** (k + 1); o = b.GetOverview(k).ReadAsArray()
    p = np.zeros((o.shape[0] * f, o.shape[1] * f), np.uint8); p[:${H}, :${W}] = a
    res.append(bool((p.reshape(o.shape[0], f, o.shape[1], f).max(axis=(1, 3)) == o).all()))
print(json.dumps(res))`);
    expect(JSON.parse(out)).toEqual([true, true, true]);
  });

  test('classes: nearest overviews, palette, band description and class names (PAM) as GDAL and QGIS read them', async () => {
    const data = new Uint8Array(W * H);
    for (let i = 0; i < data.length; i++) data[i] = ((i % W >> 6) + (Math.floor(i / W) >> 5)) % 6;
    const file = path.join(tmp, 'classes.tif');
    const colormap = [[0, 0, 0], [255, 255, 0], [255, 0, 255], [0, 255, 255], [128, 128, 128], [255, 165, 0]] as const;
    const names = ['clear', 'cloud', 'shadow', 'product_mask_only', 'nodata', 'dilation_buffer'];
    await writeGeoTiff(file, { width: W, height: H, data, geo: GEO, overviews: 'nearest', colormap, categoryNames: names, bandDescriptions: ['mask classes'] });
    const v = validateCog(file);
    expect(v.clean, v.output).toBe(true);
    const band = gdalinfo(file).bands[0];
    expect(band.colorInterpretation).toBe('Palette');
    expect(band.colorTable.entries.slice(0, 6)).toEqual(colormap.map((c) => [...c, 255]));
    expect(band.categories).toEqual(names);
    expect(band.description).toBe('mask classes');
    expect(readFileSync(`${file}.aux.xml`, 'utf8')).toContain('<Category>product_mask_only</Category>');
    const raw = path.join(tmp, 'classes.u8');
    writeFileSync(raw, data);
    const out = gdalPy(`
a = ${npArray(raw, 'uint8')}
ds = gdal.Open(${JSON.stringify(file)}); b = ds.GetRasterBand(1)
res = []
for k in range(b.GetOverviewCount()):
    o = b.GetOverview(k).ReadAsArray(); h, w = o.shape
    ys = np.minimum(${H} - 1, np.floor((np.arange(h) + 0.5) * ${H} / h).astype(int))
    xs = np.minimum(${W} - 1, np.floor((np.arange(w) + 0.5) * ${W} / w).astype(int))
    res.append(bool((a[np.ix_(ys, xs)] == o).all()))
print(json.dumps(res))`);
    expect(JSON.parse(out)).toEqual([true, true]);
    // Written again without class names, the stale sidecar goes.
    await writeGeoTiff(file, { width: W, height: H, data, geo: GEO, overviews: 'nearest' });
    expect(gdalinfo(file).bands[0].categories).toBeUndefined();
  });

  test('float32 probabilities: predictor 3 and averaged overviews, GDAL and geotiff.js read the exact values', async () => {
    const data = new Float32Array(W * H);
    for (let i = 0; i < data.length; i++) data[i] = 0.5 + 0.5 * Math.sin((i % W) / 37) * Math.cos(Math.floor(i / W) / 23);
    const file = path.join(tmp, 'prob.tif');
    await writeGeoTiff(file, { width: W, height: H, data, geo: GEO, overviews: 'average', predictor: 3, bandDescriptions: ['cloud probability'] });
    const v = validateCog(file);
    expect(v.clean, v.output).toBe(true);
    expect(gdalinfo(file).metadata.IMAGE_STRUCTURE.PREDICTOR).toBe('3');
    expect(Array.from(await geotiffJs(file))).toEqual(Array.from(data));
    const raw = path.join(tmp, 'prob.f32');
    writeFileSync(raw, data);
    const out = gdalPy(`
a = ${npArray(raw, 'float32')}
ds = gdal.Open(${JSON.stringify(file)}); b = ds.GetRasterBand(1)
o = b.GetOverview(0).ReadAsArray()
p = np.pad(a.astype(np.float64), ((0, ${H % 2}), (0, ${W % 2})), mode='edge')
m = p.reshape(o.shape[0], 2, o.shape[1], 2).mean(axis=(1, 3))
print(json.dumps([bool((b.ReadAsArray() == a).all()), float(np.abs(m - o).max())]))`);
    const [exact, err] = JSON.parse(out) as [boolean, number];
    expect(exact).toBe(true);
    expect(err).toBeLessThan(1e-6);
  });

  test('a 12-band uint16 raster without overviews keeps its layout valid (the inputs tests fabricate)', async () => {
    const u16 = new Uint16Array(12 * 300 * 200);
    for (let i = 0; i < u16.length; i++) u16[i] = (i * 7919) % 65536;
    const file = path.join(tmp, 'stack.tif');
    await writeGeoTiff(file, { width: 300, height: 200, bands: 12, data: u16, geo: { ...GEO, width: 300, height: 200 }, nodata: 0 });
    const v = validateCog(file);
    expect(v.clean, v.output).toBe(true);
  });
});
