/**
 * STAC beside the outputs: the UTM projection against GDAL's gdaltransform, footprints (one
 * across the antimeridian), items and collections validated against the official JSON schemas
 * (vendored, offline), and a real run and batch on the 29RKH scene whose items describe exactly
 * the files written (sizes, sha256, COG validity).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { itemPathFor } from '../coordinator/stac.ts';
import { buildStacItem, type ItemSpec } from '../coordinator/stac-item.ts';
import { footprintOf, unionBbox } from '../shared/footprint.ts';
import { DEFAULT_PARAMS } from '../shared/params.ts';
import { utmToLonLat, utmZoneOf } from '../shared/utm.ts';
import { REPO, runCli, SAMPLE } from './helpers/cli.ts';
import { gdalinfo, gdalPy, hasGdal, validateCog } from './helpers/gdal.ts';
import { stacErrors } from './helpers/stac-schemas.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'stac-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ITEM = path.join(SAMPLE, 'S2A_29RKH_20200219_0_L2A.json');
const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const readJson = (file: string): Record<string, any> => JSON.parse(readFileSync(file, 'utf8')); // eslint-disable-line @typescript-eslint/no-explicit-any

/** gdaltransform's lon/lat for UTM points of one EPSG code. */
function gdaltransform(epsg: number, points: Array<[number, number]>): Array<[number, number]> {
  const out = execFileSync('gdaltransform', ['-s_srs', `EPSG:${epsg}`, '-t_srs', 'EPSG:4326'], { input: points.map((p) => p.join(' ')).join('\n'), encoding: 'utf8' });
  return out.trim().split('\n').map((l) => l.trim().split(/\s+/).slice(0, 2).map(Number) as [number, number]);
}

describe('UTM to WGS 84', () => {
  test('only WGS 84 / UTM codes have a zone', () => {
    expect(utmZoneOf(32629)).toEqual({ zone: 29, south: false });
    expect(utmZoneOf(32760)).toEqual({ zone: 60, south: true });
    for (const other of [null, 4326, 3857, 32600, 32661, 32561, 25832]) expect(utmZoneOf(other)).toBeNull();
  });

  test.skipIf(!hasGdal)('agrees with gdaltransform to a millimetre across zones, hemispheres and past the zone edges', () => {
    const points: Array<[number, number]> = [];
    for (const x of [99_000, 166_000, 300_000, 500_000, 699_960, 834_000, 900_000]) for (const y of [0, 1_200_000, 2_800_020, 5_690_220, 8_300_000, 9_300_000]) points.push([x, y]);
    for (const epsg of [32601, 32629, 32633, 32660, 32701, 32733, 32760]) {
      const zone = utmZoneOf(epsg)!;
      const want = gdaltransform(epsg, points);
      points.forEach(([x, y], i) => {
        const [lon, lat] = utmToLonLat(zone, x, y);
        const [wl, wt] = want[i]!;
        // 1e-8 degrees is about a millimetre.
        const dLon = Math.abs(((lon - wl + 540) % 360) - 180);
        expect(dLon * Math.cos((wt * Math.PI) / 180), `EPSG:${epsg} ${x},${y} lon`).toBeLessThan(1e-8);
        expect(Math.abs(lat - wt), `EPSG:${epsg} ${x},${y} lat`).toBeLessThan(1e-8);
      });
    }
  });
});

describe('footprints', () => {
  test('a tile across the antimeridian (T01UBT) is a MultiPolygon cut at 180 with west > east', () => {
    const fp = footprintOf(32601, [199980, 5690220, 309780, 5800020]);
    if (!fp.geometry) throw new Error(fp.reason);
    expect(fp.geometry.type).toBe('MultiPolygon');
    const [w, s, e, n] = fp.bbox;
    expect(w).toBeGreaterThan(178);
    expect(e).toBeLessThan(-179);
    expect(s).toBeLessThan(n);
    const parts = fp.geometry.coordinates as Array<Array<Array<[number, number]>>>;
    expect(parts[0]![0]!.every(([lon]) => lon >= 178 && lon <= 180)).toBe(true);
    expect(parts[1]![0]!.every(([lon]) => lon >= -180 && lon <= -179)).toBe(true);
    for (const part of parts) expect(part[0]![0]).toEqual(part[0]![part[0]!.length - 1]);
  });

  test('other CRSs get no geometry and a reason', () => {
    const fp = footprintOf(3857, [0, 0, 10, 10]);
    expect(fp.geometry).toBeNull();
    expect(fp.geometry === null && fp.reason).toMatch(/EPSG:3857 is not WGS 84 \/ UTM/);
    expect(footprintOf(null, [0, 0, 1, 1]).geometry).toBeNull();
  });

  test('bbox unions, across the antimeridian too', () => {
    expect(unionBbox([[1, 2, 3, 4], [-5, 0, 2, 3]])).toEqual([-5, 0, 3, 4]);
    expect(unionBbox([[178.5, 51, -179.7, 52], [179, 50, 179.5, 51], [-179.9, 52, -179.2, 53]])).toEqual([178.5, 50, -179.2, 53]);
    // Covering from 100 E eastwards across the antimeridian to 10 E is smaller than the whole world.
    expect(unionBbox([[170, 0, -170, 1], [-10, 0, 10, 1], [100, 0, 120, 1], [-100, 0, -80, 1]])).toEqual([100, 0, 10, 1]);
    expect(unionBbox([[170, 0, -170, 1], [-175, 0, 175, 1]])).toEqual([-180, 0, 180, 1]);
  });
});

const SPEC: ItemSpec = {
  id: 'T29RKH',
  grid: { width: 1098, height: 1098, origin: [199980, 2800020], pixelSize: [100, 100], epsg: 32629 },
  datetime: '2020-02-19T11:34:25.405000Z',
  created: '2026-01-01T00:00:00Z',
  input: { href: ITEM, stacItem: true, id: 'S2A_29RKH_20200219_0_L2A' },
  assets: [
    { key: 'mask', href: './T29RKH.tif', size: 10, sha256: 'ab'.repeat(32) },
    { key: 'classes', href: './classes.tif', size: 10, sha256: 'cd'.repeat(32) },
    { key: 'classes_categories', href: './classes.tif.aux.xml', size: 10, sha256: 'cd'.repeat(32) },
    { key: 'cloud_probability', href: './p/cloud_probability.tif', size: 10, sha256: 'ef'.repeat(32) },
    { key: 'shadow_probability', href: './p/shadow_probability.tif', size: 10, sha256: 'ef'.repeat(32) },
    { key: 'quicklook', href: './ql.png', size: 10, sha256: '01'.repeat(32) },
  ],
  params: DEFAULT_PARAMS,
  paramHash: 'h',
  runKey: 'k',
  cloudFraction: 0.25,
  models: { cloud: { file: DEFAULT_PARAMS.cloud_model, sha256: '12'.repeat(32) }, shadow: { file: DEFAULT_PARAMS.shadow_model, sha256: null } },
  software: { name: 'improve-cloud-mask', version: '0.1.0' },
};

describe('STAC items against the official schemas', () => {
  test('a full item is valid; breaking a field each extension owns is caught', () => {
    const { item, note } = buildStacItem(SPEC);
    expect(note).toBeNull();
    expect(stacErrors(item)).toEqual([]);
    const broken = structuredClone(item) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    broken.properties['proj:shape'] = [1098];
    broken.assets.mask['file:checksum'] = 'not hex';
    broken.assets.mask['raster:bands'][0].data_type = 'uint7';
    broken.assets.classes['classification:classes'][0].color_hint = 'black';
    broken.properties['processing:software'] = 'improve-cloud-mask';
    const errors = stacErrors(broken).join('\n');
    for (const ext of ['projection', 'file', 'raster', 'classification', 'processing']) expect(errors).toContain(ext === 'file' ? 'v2.1.0' : ext === 'processing' ? 'v1.2.0' : 'v1.1.0');
    expect(errors).toMatch(/proj:shape/);
    expect(errors).toMatch(/file:checksum/);
    expect(errors).toMatch(/data_type/);
    expect(errors).toMatch(/color_hint/);
    expect(errors).toMatch(/processing:software/);
  });

  test('without a footprint (not UTM), across the antimeridian, from a plain file: still valid', () => {
    const noGeo = buildStacItem({ ...SPEC, grid: { ...SPEC.grid, epsg: 3857 } });
    expect(noGeo.item.geometry).toBeNull();
    expect(noGeo.item.bbox).toBeUndefined();
    expect(noGeo.note).toMatch(/EPSG:3857/);
    expect(stacErrors(noGeo.item)).toEqual([]);
    const antimeridian = buildStacItem({ ...SPEC, grid: { ...SPEC.grid, epsg: 32601, origin: [199980, 5800020] } });
    expect((antimeridian.item.geometry as { type: string }).type).toBe('MultiPolygon');
    expect(stacErrors(antimeridian.item)).toEqual([]);
    const plain = buildStacItem({ ...SPEC, datetime: null, input: { href: '/data/stack.tif', stacItem: false, id: null } });
    expect(plain.item.links).toEqual([{ rel: 'derived_from', href: '/data/stack.tif', title: 'input scene' }]);
    expect((plain.item.properties as Record<string, unknown>).datetime).toBe(SPEC.created);
    expect(stacErrors(plain.item)).toEqual([]);
  });
});

describe.skipIf(!hasGdal)('real outputs on the 29RKH scene', () => {
  test('run: the item lists every output with its real size and sha256, every raster is a clean COG, the item validates', async () => {
    const dir = path.join(tmp, 'run');
    const out = path.join(dir, 'T29RKH.tif');
    const r = await runCli(['run', '--s2-raster', ITEM, '--product-mask', 'scl', '--out', out, '--classes', path.join(dir, 'classes.tif'), '--probabilities', path.join(dir, 'prob'), '--quicklook', path.join(dir, 'ql.png'), '--threads', '2']);
    expect(r.code, r.stderr).toBe(0);
    const itemPath = itemPathFor(out);
    expect(itemPath).toBe(path.join(dir, 'T29RKH.json'));
    const item = readJson(itemPath);
    expect(stacErrors(item)).toEqual([]);
    expect(Object.keys(item.assets)).toEqual(['mask', 'classes', 'classes_categories', 'cloud_probability', 'shadow_probability', 'quicklook']);
    for (const [key, a] of Object.entries(item.assets as Record<string, { href: string; 'file:size': number; 'file:checksum': string; type: string }>)) {
      const file = path.resolve(dir, a.href);
      expect(a['file:size'], key).toBe(statSync(file).size);
      expect(a['file:checksum'], key).toBe(`1220${sha256(file)}`);
      if (a.type.includes('cloud-optimized')) {
        const v = validateCog(file);
        expect(v.clean, `${key}: ${v.output}`).toBe(true);
      }
    }
    expect(item.links).toContainEqual(expect.objectContaining({ rel: 'derived_from', href: ITEM }));
    expect(item.properties.datetime).toBe(readJson(ITEM).properties.datetime);
    expect(item.properties['icm:models'].cloud.sha256).toBe(sha256(path.join(REPO, 'models', DEFAULT_PARAMS.cloud_model)));
    expect(item.properties['icm:models'].shadow.sha256).toBe(sha256(path.join(REPO, 'models', DEFAULT_PARAMS.shadow_model)));
    expect(item.properties['processing:software']).toEqual({ 'improve-cloud-mask': readJson(path.join(REPO, 'package.json')).version });
    // The projection fields and footprint agree with GDAL's reading of the mask.
    const info = gdalinfo(out);
    const [x0, dx, , y0, , dy] = info.geoTransform as number[];
    expect(item.properties['proj:transform']).toEqual([dx, 0, x0, 0, dy, y0]);
    expect(item.properties['proj:shape']).toEqual([info.size[1], info.size[0]]);
    expect(item.properties['proj:epsg']).toBe(info.stac['proj:epsg']);
    const corners = (info.wgs84Extent.coordinates[0] as Array<[number, number]>).slice(0, 4);
    const ring = item.geometry.coordinates[0] as Array<[number, number]>;
    for (const c of corners) expect(ring.some((p) => Math.abs(p[0] - c[0]) < 1e-7 && Math.abs(p[1] - c[1]) < 1e-7), `corner ${c}`).toBe(true);
    // The styles writeOutputs promises: max overviews for the mask, nearest for the classes, predictor 3 for probabilities.
    const styles = gdalPy(`
ds = gdal.Open(${JSON.stringify(out)}); b = ds.GetRasterBand(1); a = b.ReadAsArray(); o = b.GetOverview(0).ReadAsArray()
c = gdal.Open(${JSON.stringify(path.join(dir, 'classes.tif'))}); cb = c.GetRasterBand(1); ca = cb.ReadAsArray(); co = cb.GetOverview(0).ReadAsArray()
p = gdal.Open(${JSON.stringify(path.join(dir, 'prob', 'cloud_probability.tif'))})
print(json.dumps([b.GetOverviewCount(), bool((a.reshape(549, 2, 549, 2).max(axis=(1, 3)) == o).all()), bool((ca[1::2, 1::2] == co).all()), p.GetMetadata('IMAGE_STRUCTURE').get('PREDICTOR')]))`);
    expect(JSON.parse(styles)).toEqual([2, true, true, '3']);
    const classes = gdalinfo(path.join(dir, 'classes.tif')).bands[0];
    expect(classes.categories).toEqual(item.assets.classes['classification:classes'].map((c: { name: string }) => c.name));
  });

  test('batch: a collection linking every item (extent the union), items pointing back, all valid; a rerun skips and keeps them', async () => {
    const outDir = path.join(tmp, 'archive');
    const manifest = path.join(tmp, 'scenes.txt');
    writeFileSync(manifest, `${SAMPLE} scl\n${ITEM} none\n`);
    const r = await runCli(['batch', '--manifest', manifest, '--out-dir', outDir, '--threads', '2']);
    expect(r.code, r.stderr).toBe(0);
    const check = (): void => {
      const collection = readJson(path.join(outDir, 'collection.json'));
      expect(stacErrors(collection)).toEqual([]);
      const itemLinks = (collection.links as Array<{ rel: string; href: string }>).filter((l) => l.rel === 'item').map((l) => l.href).sort();
      expect(itemLinks).toEqual(['./S2A_29RKH_20200219_0_L2A.json', './s2-l2a-29RKH.json']);
      const items = itemLinks.map((h) => readJson(path.join(outDir, h)));
      for (const item of items) {
        expect(stacErrors(item)).toEqual([]);
        expect(item.collection).toBe('archive');
        expect(item.links).toContainEqual({ rel: 'collection', href: './collection.json', type: 'application/json' });
      }
      expect(collection.extent.spatial.bbox[0]).toEqual(unionBbox(items.map((i) => i.bbox)));
      expect(collection.extent.temporal.interval[0]).toEqual(['2020-02-19T11:34:25.405000Z', '2020-02-19T11:34:25.405000Z']);
    };
    check();
    const again = await runCli(['batch', '--manifest', manifest, '--out-dir', outDir, '--threads', '2']);
    expect(again.code, again.stderr).toBe(0);
    expect(readJson(path.join(outDir, 'report.json')).skipped).toBe(2);
    check();
    // A scene whose item is missing is not finished: it runs again.
    rmSync(path.join(outDir, 's2-l2a-29RKH.json'));
    const third = await runCli(['batch', '--manifest', manifest, '--out-dir', outDir, '--threads', '2']);
    expect(third.code, third.stderr).toBe(0);
    expect(readJson(path.join(outDir, 'report.json'))).toMatchObject({ done: 1, skipped: 1 });
    expect(existsSync(path.join(outDir, 's2-l2a-29RKH.json'))).toBe(true);
    check();
  });
});

describe('a failing item write', () => {
  test('leaves no output behind: the mask and the other files written go too', async () => {
    const { openScene } = await import('../raster/scene-reader.ts');
    const { resolveSource } = await import('../raster/source.ts');
    const { Stitcher } = await import('../coordinator/stitch.ts');
    const { sceneOf, writeOutputs } = await import('../coordinator/outputs.ts');
    const dir = path.join(tmp, 'fail');
    const reader = await openScene(await resolveSource(SAMPLE));
    try {
      const { width, height } = reader.geo;
      const stitcher = new Stitcher(width, height, 1, false);
      stitcher.orRaster('cloud', new Uint8Array(width * height).fill(1, 0, width * 10));
      const out = path.join(dir, 'scene.tif');
      // A folder where the item should go: its rename fails.
      (await import('node:fs')).mkdirSync(path.join(dir, 'scene.json', 'x'), { recursive: true });
      const err = await writeOutputs({ out, classes: path.join(dir, 'classes.tif') }, stitcher, sceneOf(reader), DEFAULT_PARAMS, { runKey: 'k', paramHash: 'h', input: SAMPLE, onStage: () => {} }).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('OUTPUT_FAILED');
      expect((err as Error).message).toContain(path.join(dir, 'scene.json'));
      for (const f of ['scene.tif', 'classes.tif', 'classes.tif.aux.xml']) expect(existsSync(path.join(dir, f)), f).toBe(false);
    } finally {
      await reader.close();
    }
  });
});
