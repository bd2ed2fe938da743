/**
 * The product's own cloud mask: the GML rasteriser against GDAL's gdal_rasterize (a real
 * MSK_CLOUDS_B00.gml and a hand-made one with holes), MSK_CLASSI_B00 of the real T01UBT SAFE
 * against an independent GDAL read, and the SCL fallback.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { parseMaskGml, rasterizeCloudGml } from '../raster/msk-gml.ts';
import { loadProductMask, readProductMask } from '../raster/product-mask.ts';
import { unpackMask } from '../shared/packed-mask.ts';
import type { PixelGrid } from '../raster/rasterize.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import type { SceneReader } from '../raster/types.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { DATA, runCli } from './helpers/cli.ts';

const FIXTURE = path.resolve(path.dirname(new URL(import.meta.url).pathname), 'fixtures/msk-clouds/MSK_CLOUDS_B00_T07HFE.gml');
const SAFE = path.join(DATA, 's2-l2a-T01UBT-safe', 'S2B_MSIL2A_20230122T231849_N0400_R087_T01UBT_20230124T042703.SAFE');
const GRANULE = path.join('GRANULE', 'L2A_T01UBT_A030715_20230122T231921');
const PY = '/usr/bin/python3';
// GDAL is the reference (scripts/ensure-system-deps.sh installs gdal-bin and python3-gdal).
const hasGdal =
  existsSync(PY) && spawnSync(PY, ['-c', 'from osgeo import gdal'], { stdio: 'ignore' }).status === 0 && spawnSync('gdal_rasterize', ['--version'], { stdio: 'ignore' }).status === 0;

const tmp = mkdtempSync(path.join(tmpdir(), 'product-mask-'));
const readers: SceneReader[] = [];

afterAll(async () => {
  await Promise.all(readers.map((r) => r.close()));
  rmSync(tmp, { recursive: true, force: true });
});

async function open(input: string): Promise<SceneReader> {
  const r = await openScene(await resolveSource(input));
  readers.push(r);
  return r;
}

/** A grid as gdal_rasterize builds it from -te and -ts (pixel size = extent / count, in doubles). */
function gdalGrid(minX: number, minY: number, maxX: number, maxY: number, width: number, height: number): PixelGrid {
  return { width, height, origin: [minX, maxY], pixelSize: [(maxX - minX) / width, (maxY - minY) / height] };
}

/** gdal_rasterize of the OPAQUE and CIRRUS features of `gml` on `grid` (the GDAL default rule), as bytes. */
function gdalRasterize(gml: string, grid: PixelGrid, name: string): Buffer {
  // OGR writes a .gfs schema file beside the GML: rasterise a copy in the temporary folder.
  const copy = path.join(tmp, `${name}.gml`);
  copyFileSync(gml, copy);
  const out = path.join(tmp, `${name}.tif`);
  const [x0, y1] = grid.origin;
  const te = [x0, y1 - grid.height * grid.pixelSize[1], x0 + grid.width * grid.pixelSize[0], y1].map(String);
  execFileSync('gdal_rasterize', ['-q', '-burn', '1', '-init', '0', '-ot', 'Byte', '-where', "maskType IN ('OPAQUE', 'CIRRUS')", '-te', ...te, '-ts', String(grid.width), String(grid.height), copy, out]);
  return execFileSync(PY, ['-c', `import sys; from osgeo import gdal; sys.stdout.buffer.write(gdal.Open(${JSON.stringify(out)}).ReadAsArray().tobytes())`], { maxBuffer: 1 << 28 });
}

function expectSame(ours: Uint8Array, gdal: Buffer, what: string): void {
  expect(ours.length, what).toBe(gdal.length);
  let differ = 0;
  for (let i = 0; i < ours.length; i++) if (ours[i] !== gdal[i]) differ++;
  expect(differ, `${what}: pixels that differ from gdal_rasterize`).toBe(0);
}

const count = (a: ArrayLike<number>): number => {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += a[i]! ? 1 : 0;
  return n;
};

/** A GML in the eop:Mask layout with the given features: [type, exterior, ...holes] rings of "x y" pairs. */
function maskGml(epsg: number, features: Array<[string, ...number[][]]>): string {
  const ring = (pts: number[]): string => `<gml:LinearRing><gml:posList srsDimension="2">${pts.join(' ')}</gml:posList></gml:LinearRing>`;
  const members = features.map(([type, ext, ...holes], i) =>
    [
      `<eop:MaskFeature gml:id="${type}.${i}"><eop:maskType codeSpace="urn:gs2:S2PDGS:maskType">${type}</eop:maskType>`,
      `<eop:extentOf><gml:Polygon gml:id="${type}.${i}_Polygon"><gml:exterior>${ring(ext!)}</gml:exterior>`,
      ...holes.map((h) => `<gml:interior>${ring(h)}</gml:interior>`),
      '</gml:Polygon></eop:extentOf></eop:MaskFeature>',
    ].join('\n'),
  );
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<eop:Mask xmlns:eop="http://www.opengis.net/eop/2.0" xmlns:gml="http://www.opengis.net/gml/3.2" gml:id="test">',
    `<gml:boundedBy><gml:Envelope srsName="urn:ogc:def:crs:EPSG:8.7:${epsg}"><gml:lowerCorner>0 0</gml:lowerCorner><gml:upperCorner>0 0</gml:upperCorner></gml:Envelope></gml:boundedBy>`,
    `<eop:maskMembers>${members.join('\n')}</eop:maskMembers>`,
    '</eop:Mask>',
  ].join('\n');
}

describe.skipIf(!hasGdal)('MSK_CLOUDS_B00.gml rasterised as gdal_rasterize does', () => {
  const gml = parseMaskGml(readFileSync(FIXTURE, 'utf8'), FIXTURE);

  test('the real T07HFE GML: OPAQUE and CIRRUS features in EPSG:32707', () => {
    expect(gml.epsg).toBe(32707);
    expect(gml.features.map((f) => f.type).sort()).toEqual([...Array(6).fill('CIRRUS'), ...Array(4).fill('OPAQUE')]);
    expect(gml.envelope).toEqual([600000, 6483760, 632760, 6500020]);
  });

  // 10 m as on a real product; 20 m offset by half a pixel and 30 m offset by 15 m put its edges
  // (60 m steps) through pixel centres; 7 m matches nothing.
  const grids: Array<[string, number, number]> = [
    ['10 m on the envelope', 10, 0],
    ['20 m, edges through centres', 20, 10],
    ['30 m, edges through centres', 30, 15],
    ['7 m, off the 60 m lattice', 7, 3],
  ];
  test.each(grids)('the real GML on a grid covering its envelope, %s: identical to gdal_rasterize', (name, px, shift) => {
    const [minX, minY, maxX, maxY] = gml.envelope!;
    const width = Math.ceil((maxX - minX) / px) + 2;
    const height = Math.ceil((maxY - minY) / px) + 2;
    const x0 = minX - px + shift;
    const y1 = maxY + px - shift;
    const grid = gdalGrid(x0, y1 - height * px, x0 + width * px, y1, width, height);
    const ours = rasterizeCloudGml(gml, grid);
    expect(count(ours)).toBeGreaterThan(0.05 * ours.length);
    expectSame(ours, gdalRasterize(FIXTURE, grid, `t07-${px}`), name);
  });

  test('holes, both ring orientations, slanted edges, a feature type that is not cloud: identical to gdal_rasterize', () => {
    const x = (v: number): number => 300000 + v;
    const y = (v: number): number => 5700000 + v;
    const square = (a: number, b: number, c: number, d: number): number[] => [x(a), y(d), x(b), y(d), x(b), y(c), x(a), y(c), x(a), y(d)];
    const reversed = (pts: number[]): number[] => pts.flatMap((_, i) => (i % 2 ? [] : [pts[pts.length - 2 - i]!, pts[pts.length - 1 - i]!]));
    const file = path.join(tmp, 'synthetic.gml');
    writeFileSync(
      file,
      maskGml(32601, [
        ['OPAQUE', square(0, 600, 400, 1000), reversed(square(120, 480, 520, 880))],
        ['OPAQUE', reversed(square(700, 990, 600, 990)), square(760, 820, 660, 720), reversed(square(850, 950, 850, 950))],
        ['CIRRUS', [x(500), y(300), x(1000), y(50), x(950), y(0), x(333), y(1), x(500), y(300)], [x(500), y(200), x(700), y(100), x(450), y(50), x(500), y(200)]],
        ['SNOW', [x(0), y(0), x(300), y(0), x(0), y(300), x(0), y(0)]],
      ]),
    );
    const parsed = parseMaskGml(readFileSync(file, 'utf8'), file);
    expect(parsed.features.map((f) => [f.type, f.polygon.length])).toEqual([['OPAQUE', 2], ['OPAQUE', 3], ['CIRRUS', 2], ['SNOW', 1]]);
    for (const [px, shift] of [[10, 0], [60, 30], [30, 15], [13.7, 2.2]] as const) {
      const n = Math.ceil(1000 / px) + 4;
      const x0 = x(-2 * px + shift);
      const y1 = y(1000 + 2 * px - shift);
      const grid = gdalGrid(x0, y1 - n * px, x0 + n * px, y1, n, n);
      const ours = rasterizeCloudGml(parsed, grid);
      expect(count(ours), `${px} m`).toBeGreaterThan(0);
      expectSame(ours, gdalRasterize(file, grid, `synthetic-${px}`), `${px} m grid`);
    }
  });

  test('bad GML fails with one clear line naming the file', () => {
    expect(() => parseMaskGml('<html></html>', 'x.gml')).toThrow(/x\.gml is not a Sentinel-2 mask GML/);
    const noRing = maskGml(32601, [['OPAQUE', [1, 2, 3]]]);
    expect(() => parseMaskGml(noRing, 'y.gml')).toThrow(CloudMaskError);
    expect(() => parseMaskGml(noRing, 'y.gml')).toThrow(/y\.gml feature OPAQUE: a ring of 3 numbers/);
  });
});

/** A copy of the T01UBT SAFE (links to its files) with some QI_DATA files changed; `baseline` rewrites MTD_MSIL2A.xml. */
function safeCopy(name: string, change: { drop?: string[]; add?: Record<string, string>; baseline?: string } = {}): string {
  const dir = path.join(tmp, name, path.basename(SAFE));
  cpSync(SAFE, dir, { recursive: true });
  // The shared data is read-only, and so are copies of it.
  execFileSync('chmod', ['-R', 'u+w', dir]);
  const qi = path.join(dir, GRANULE, 'QI_DATA');
  for (const f of change.drop ?? []) unlinkSync(path.join(qi, f));
  for (const [f, text] of Object.entries(change.add ?? {})) writeFileSync(path.join(qi, f), text);
  if (change.baseline) {
    const mtd = path.join(dir, 'MTD_MSIL2A.xml');
    writeFileSync(mtd, readFileSync(mtd, 'utf8').replace(/<PROCESSING_BASELINE>[^<]*</, `<PROCESSING_BASELINE>${change.baseline}<`));
  }
  return dir;
}

/** Opaque or cirrus band set, read by GDAL and resampled nearest onto a `width` x `height` grid. */
function gdalClassiCloud(classi: string, width: number, height: number): Buffer {
  return execFileSync(PY, ['-c', `
import sys
from osgeo import gdal
import numpy as np
d = gdal.Open(${JSON.stringify(classi)})
b = [d.GetRasterBand(i).ReadAsArray(buf_xsize=${width}, buf_ysize=${height}, resample_alg=gdal.GRIORA_NearestNeighbour) for i in (1, 2)]
sys.stdout.buffer.write(((b[0] != 0) | (b[1] != 0)).astype(np.uint8).tobytes())`], { maxBuffer: 1 << 28 });
}

describe('--product-mask product', () => {
  const classi = path.join(SAFE, GRANULE, 'QI_DATA', 'MSK_CLASSI_B00.tif');

  test.skipIf(!hasGdal)('the T01UBT SAFE (baseline 04.00): MSK_CLASSI_B00 opaque + cirrus, equal to an independent GDAL read', async () => {
    const scene = await open(SAFE);
    expect(scene.source.kind === 'bands' && scene.source.qualityMasks).toEqual({ classi, cloudsGml: null });
    const warnings: string[] = [];
    const mask = await loadProductMask('product', scene, { warn: (m) => warnings.push(m) });
    expect(mask.source).toBe('MSK_CLASSI_B00');
    expect(mask.href).toBe(classi);
    expect(warnings).toEqual([]);
    const gdal = gdalClassiCloud(classi, scene.geo.width, scene.geo.height);
    expectSame(unpackMask(mask.bits!), gdal, 'MSK_CLASSI_B00');
    // Very cloudy, and the cirrus band adds pixels the opaque band alone does not have.
    const opaqueOnly = Number(execFileSync(PY, ['-c', `import numpy; from osgeo import gdal; d = gdal.Open(${JSON.stringify(classi)}); print(int((d.GetRasterBand(1).ReadAsArray() != 0).sum()))`], { encoding: 'utf8' }));
    expect(count(unpackMask(mask.bits!))).toBeGreaterThan(opaqueOnly);
    expect(count(unpackMask(mask.bits!))).toBeGreaterThan(0.9 * unpackMask(mask.bits!).length);
    expect(count(unpackMask(mask.bits!))).toBeLessThan(unpackMask(mask.bits!).length);
  });

  test.skipIf(!hasGdal)('a 60 m MSK_CLASSI_B00 on a finer scene grid is resampled nearest (ratio 6), as GDAL does', async () => {
    // The sample SAFE holds every raster at one size: make its 10 m bands 6x finer so that
    // MSK_CLASSI_B00 (and every other band) is 6x coarser, as a real 60 m mask is over 10 m bands.
    const dir = safeCopy('fine');
    const r10 = path.join(dir, GRANULE, 'IMG_DATA', 'R10m');
    for (const f of readdirSync(r10).filter((n) => /_B0[2348]_10m\.tif$/.test(n))) {
      const src = path.join(SAFE, GRANULE, 'IMG_DATA', 'R10m', f);
      execFileSync('gdal_translate', ['-q', '-r', 'nearest', '-outsize', '600', '600', src, path.join(r10, f)]);
    }
    const scene = await open(dir);
    expect(scene.geo.width).toBe(600);
    const mask = await loadProductMask('product', scene);
    expect(mask.source).toBe('MSK_CLASSI_B00');
    expectSame(unpackMask(mask.bits!), gdalClassiCloud(path.join(dir, GRANULE, 'QI_DATA', 'MSK_CLASSI_B00.tif'), 600, 600), 'MSK_CLASSI_B00 at ratio 6');
  });

  test.skipIf(!hasGdal)('an older product (baseline 02.14) with MSK_CLOUDS_B00.gml: its polygons on the scene grid, as gdal_rasterize', async () => {
    // A GML in the tile's CRS (EPSG:32601) over part of T01UBT (origin 199980, 5800020, 1098 m pixels).
    const gml = maskGml(32601, [
      ['OPAQUE', [210000, 5790000, 260000, 5790000, 260000, 5740000, 210000, 5740000, 210000, 5790000], [220000, 5780000, 220000, 5760000, 240000, 5760000, 240000, 5780000, 220000, 5780000]],
      ['CIRRUS', [270000, 5720000, 300000, 5700000, 280000, 5695000, 270000, 5720000]],
    ]);
    const dir = safeCopy('old', { drop: ['MSK_CLASSI_B00.tif'], add: { 'MSK_CLOUDS_B00.gml': gml }, baseline: '02.14' });
    const scene = await open(dir);
    const mask = await loadProductMask('product', scene);
    expect(mask.source).toBe('MSK_CLOUDS_B00.gml');
    const grid = gdalGrid(199980, 5800020 - 100 * 1098, 199980 + 100 * 1098, 5800020, 100, 100);
    expect(scene.geo).toMatchObject({ width: 100, height: 100, origin: grid.origin, pixelSize: grid.pixelSize });
    const gdal = gdalRasterize(path.join(dir, GRANULE, 'QI_DATA', 'MSK_CLOUDS_B00.gml'), grid, 'old-safe');
    expectSame(unpackMask(mask.bits!), gdal, 'MSK_CLOUDS_B00.gml on T01UBT');
    expect(count(unpackMask(mask.bits!))).toBeGreaterThan(100);
    // A GML in another CRS than the scene is refused, naming both.
    const other = safeCopy('old-utm2', { drop: ['MSK_CLASSI_B00.tif'], add: { 'MSK_CLOUDS_B00.gml': gml.replace('EPSG:8.7:32601', 'EPSG:8.7:32602') }, baseline: '02.14' });
    await expect(loadProductMask('product', await open(other))).rejects.toThrow(/EPSG:32602 but the scene is in EPSG:32601/);
  });

  test('neither mask: a warning naming the product and SCL instead; no SCL either: a clear error', async () => {
    const dir = safeCopy('bare', { drop: ['MSK_CLASSI_B00.tif'] });
    const scene = await open(dir);
    const warnings: string[] = [];
    const mask = await loadProductMask('product', scene, { warn: (m) => warnings.push(m) });
    expect(mask.source).toBe('SCL');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/S2B_MSIL2A_20230122T231849_N0400_R087_T01UBT_20230124T042703 carries no MSK_CLASSI_B00 or MSK_CLOUDS_B00\.gml; using its SCL/);
    expect(Buffer.from(unpackMask(mask.bits!)).equals(Buffer.from((await readProductMask('scl', scene))!))).toBe(true);

    const noScl = safeCopy('bare-no-scl', { drop: ['MSK_CLASSI_B00.tif'] });
    const r20 = path.join(noScl, GRANULE, 'IMG_DATA', 'R20m');
    for (const f of readdirSync(r20).filter((n) => /_SCL_/.test(n))) unlinkSync(path.join(r20, f));
    const err = await loadProductMask('product', await open(noScl)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudMaskError);
    expect((err as CloudMaskError).code).toBe('BAD_INPUT');
    expect((err as CloudMaskError).message).toMatch(/no quality masks \(MSK_CLASSI_B00, MSK_CLOUDS_B00\.gml\) and no SCL band; pass --product-mask none or a mask file/);
  });

  test('a STAC item names its mask assets (by key or by ESA file name); without them the source has none', async () => {
    const dir = path.join(tmp, 'stac');
    mkdirSync(dir);
    const img = (res: string, band: string): string => path.join(SAFE, GRANULE, 'IMG_DATA', res, `T01UBT_20230122T231849_${band}_${res.slice(1)}.tif`);
    const bands: Record<string, string> = {
      coastal: img('R60m', 'B01'), blue: img('R10m', 'B02'), green: img('R10m', 'B03'), red: img('R10m', 'B04'),
      rededge1: img('R20m', 'B05'), rededge2: img('R20m', 'B06'), rededge3: img('R20m', 'B07'), nir: img('R10m', 'B08'),
      nir08: img('R20m', 'B8A'), nir09: img('R60m', 'B09'), swir16: img('R20m', 'B11'), swir22: img('R20m', 'B12'), scl: img('R20m', 'SCL'),
    };
    const assets = Object.fromEntries(Object.entries(bands).map(([k, href]) => [k, { href }]));
    const item = (extra: Record<string, { href: string }>): string => JSON.stringify({ type: 'Feature', id: 'T01UBT', properties: { 's2:processing_baseline': '04.00' }, assets: { ...assets, ...extra } });
    writeFileSync(path.join(dir, 'by-key.json'), item({ MSK_CLASSI: { href: classi } }));
    writeFileSync(path.join(dir, 'by-name.json'), item({ 'cloud-mask': { href: classi } }));
    writeFileSync(path.join(dir, 'none.json'), item({}));
    for (const f of ['by-key.json', 'by-name.json']) {
      const scene = await open(path.join(dir, f));
      expect(scene.source.kind === 'bands' && scene.source.qualityMasks, f).toEqual({ classi, cloudsGml: null });
      expect((await loadProductMask('product', scene)).source, f).toBe('MSK_CLASSI_B00');
    }
    const plain = await resolveSource(path.join(dir, 'none.json'));
    expect(plain.kind === 'bands' && plain.qualityMasks).toBeUndefined();
  });

  test('the CLI: product is the default, the JSON report and the summary name the source', async () => {
    const out = path.join(tmp, 'cli', 'mask.tif');
    const r = await runCli(['run', '--s2-raster', SAFE, '--out', out, '--json', '--quiet', '--threads', '2']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { productMask: { source: string; href: string } };
    expect(report.productMask).toEqual({ source: 'MSK_CLASSI_B00', href: classi });
    const text = await runCli(['run', '--s2-raster', SAFE, '--product-mask', 'scl', '--out', path.join(tmp, 'cli', 'scl.tif'), '--quiet', '--threads', '2']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stderr).toMatch(/product mask +SCL \(.*_SCL_20m\.tif\)/);
  });
});
