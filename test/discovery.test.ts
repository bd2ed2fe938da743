/**
 * Archive discovery from STAC: a static catalog on disk and a STAC API (POST /search, two pages)
 * stood up by the harness, each feeding a real `batch` run on the real 29RKH scene. The items
 * found are processed and their masks equal the local run of the same scene.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { discoverScenes } from '../coordinator/scene-discovery.ts';
import { BAND_NAMES } from '../raster/bands.ts';
import { runCli, SAMPLE } from './helpers/cli.ts';
import { hasGdal, validateCog } from './helpers/gdal.ts';
import { startStacApi, type StacApiServer } from './helpers/stac-api.ts';
import { stacErrors } from './helpers/stac-schemas.ts';

const ITEM = JSON.parse(readFileSync(path.join(SAMPLE, 'S2A_29RKH_20200219_0_L2A.json'), 'utf8')) as Record<string, unknown> & {
  assets: Record<string, { href: string }>;
  properties: Record<string, unknown>;
};
const COMMON: Record<string, string> = { B01: 'coastal', B02: 'blue', B03: 'green', B04: 'red', B05: 'rededge1', B06: 'rededge2', B07: 'rededge3', B08: 'nir', B8A: 'nir08', B09: 'nir09', B11: 'swir16', B12: 'swir22' };

/** The real sample item with its band and SCL assets pointing at `base` (a folder or URL). */
function sampleItem(id: string, base: string, props: Record<string, unknown> = {}, drop: string[] = []): Record<string, unknown> {
  const assets: Record<string, unknown> = {};
  const join = (f: string): string => (base.startsWith('http') ? `${base}/${f}` : path.join(base, f));
  for (const band of BAND_NAMES) if (!drop.includes(band)) assets[COMMON[band]!] = { ...ITEM.assets[COMMON[band]!], href: join(`${band}.tif`) };
  assets.scl = { ...ITEM.assets.scl, href: join('SCL.tif') };
  return { ...ITEM, id, assets, links: [], properties: { ...ITEM.properties, ...props } };
}

/** Each scene's mask is a clean COG (GDAL's validator), its item and the out-dir's collection pass the STAC schemas, the item derives from `source(name)`. */
function expectValidOutputs(outDir: string, names: string[], source: (name: string) => string): void {
  const json = (f: string): Record<string, any> => JSON.parse(readFileSync(path.join(outDir, f), 'utf8')); // eslint-disable-line @typescript-eslint/no-explicit-any
  for (const name of names) {
    if (hasGdal) {
      const v = validateCog(path.join(outDir, `${name}.tif`));
      expect(v.clean, v.output).toBe(true);
    }
    const item = json(`${name}.json`);
    expect(stacErrors(item), name).toEqual([]);
    expect(item.links).toContainEqual(expect.objectContaining({ rel: 'derived_from', href: source(name) }));
  }
  const collection = json('collection.json');
  expect(stacErrors(collection)).toEqual([]);
  expect(collection.links.filter((l: { rel: string }) => l.rel === 'item').map((l: { href: string }) => l.href).sort()).toEqual(names.map((n) => `./${n}.json`).sort());
}

async function readBand(file: string): Promise<Uint8Array> {
  const image = await (await fromFile(file)).getImage();
  return ((await image.readRasters({ interleave: false })) as unknown as Uint8Array[])[0]!;
}

let tmp: string;
let reference: Uint8Array;
beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-discovery-'));
  const r = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', path.join(tmp, 'reference.tif'), '--quiet']);
  expect(r.code, r.stderr).toBe(0);
  reference = await readBand(path.join(tmp, 'reference.tif'));
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('static STAC catalog', () => {
  test('catalog -> collection -> items: usable items processed, an item without a band skipped and reported', async () => {
    const root = path.join(tmp, 'catalog');
    mkdirSync(path.join(root, 'c', 'items'), { recursive: true });
    const write = (rel: string, doc: unknown): void => writeFileSync(path.join(root, rel), JSON.stringify(doc));
    write('catalog.json', { type: 'Catalog', stac_version: '1.0.0', id: 'root', description: 'test', links: [{ rel: 'child', href: './c/collection.json' }, { rel: 'self', href: './catalog.json' }] });
    write('c/collection.json', {
      type: 'Collection', stac_version: '1.0.0', id: 'c', description: 'test', license: 'proprietary',
      extent: { spatial: { bbox: [ITEM.bbox] }, temporal: { interval: [[null, null]] } },
      links: [{ rel: 'item', href: './items/a.json' }, { rel: 'item', href: 'items/b.json' }, { rel: 'item', href: 'items/cloudy.json' }, { rel: 'parent', href: '../catalog.json' }, { rel: 'root', href: '../catalog.json' }],
    });
    write('c/items/a.json', sampleItem('scene-a', SAMPLE));
    write('c/items/b.json', sampleItem('scene-b-no-b09', SAMPLE, {}, ['B09']));
    write('c/items/cloudy.json', sampleItem('scene-cloudy', SAMPLE, { 'eo:cloud_cover': 95 }));

    const logs: string[] = [];
    const found = await discoverScenes({ stac: path.join(root, 'catalog.json'), maxCloudCover: 50 }, { defaultProductMask: 'scl', log: (l) => logs.push(l) });
    expect(found.scenes.map((s) => s.name)).toEqual(['scene-a']);
    expect(found.skipped).toEqual([{ id: 'scene-b-no-b09', reason: 'no asset for band B09' }]);
    expect(logs.join('\n')).toMatch(/skipped item scene-b-no-b09: no asset for band B09/);

    const out = path.join(tmp, 'out-static');
    const r = await runCli(['batch', '--stac', path.join(root, 'catalog.json'), '--max-cloud-cover', '50', '--out-dir', out, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(await readBand(path.join(out, 'scene-a.tif'))).toEqual(reference);
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report.scenes).toHaveLength(1);
    expect(report.discoverySkipped).toEqual([{ id: 'scene-b-no-b09', reason: 'no asset for band B09' }]);
    expectValidOutputs(out, ['scene-a'], () => path.join(root, 'c', 'items', 'a.json'));
  }, 180_000);

  test('a catalog with a link cycle ends, an unknown document type is a one-line error', async () => {
    const root = path.join(tmp, 'cycle');
    mkdirSync(root, { recursive: true });
    writeFileSync(path.join(root, 'a.json'), JSON.stringify({ type: 'Catalog', id: 'a', links: [{ rel: 'child', href: 'b.json' }] }));
    writeFileSync(path.join(root, 'b.json'), JSON.stringify({ type: 'Catalog', id: 'b', links: [{ rel: 'child', href: 'a.json' }, { rel: 'item', href: 'i.json' }] }));
    copyFileSync(path.join(SAMPLE, 'S2A_29RKH_20200219_0_L2A.json'), path.join(root, 'i.json'));
    writeFileSync(path.join(root, 'i.json'), JSON.stringify(sampleItem('only', SAMPLE)));
    const found = await discoverScenes({ stac: path.join(root, 'a.json') }, { defaultProductMask: 'scl', log: () => {} });
    expect(found.scenes.map((s) => s.name)).toEqual(['only']);
    writeFileSync(path.join(root, 'odd.json'), JSON.stringify({ type: 'Something' }));
    const r = await runCli(['batch', '--stac', path.join(root, 'odd.json'), '--out-dir', path.join(tmp, 'odd')]);
    expect(r.code).toBe(3);
    expect(r.stderr.trim().split('\n').pop()).toMatch(/error \[BAD_INPUT\]: STAC document .*odd\.json: type "Something" is not a Catalog/);
  });
});

describe('STAC API item search', () => {
  let api: StacApiServer;
  beforeAll(async () => {
    // The real sample's assets served by the API server itself; four items, two pages of two
    // for the search below (the third item is too cloudy, the fourth of another collection).
    let base = '';
    const items = () => [
      sampleItem('S2A_29RKH_20200219_0_L2A', base, { 'eo:cloud_cover': 4.05 }),
      sampleItem('S2A_29RKH_20200224_0_L2A', base, { 'eo:cloud_cover': 10, datetime: '2020-02-24T11:34:25Z' }),
      sampleItem('S2A_29RKH_20200229_0_L2A', base, { 'eo:cloud_cover': 80, datetime: '2020-02-29T11:34:25Z' }),
      sampleItem('S2B_29RKH_20200221_0_L2A', base, { 'eo:cloud_cover': 1 }, ['B8A']),
      { ...sampleItem('LC08_other', base), collection: 'landsat' },
    ];
    const list: ReturnType<typeof items> = [];
    api = await startStacApi(list as never, SAMPLE, { maxPageSize: 2 });
    base = api.url;
    list.push(...items());
  });
  afterAll(() => api?.close());

  test('POST /search over two pages: the items found are processed, the one without a band is skipped', async () => {
    const out = path.join(tmp, 'out-api');
    const r = await runCli([
      'batch', '--stac-api', api.url, '--collection', 'sentinel-2-l2a', '--bbox=-12,24,-10.5,25.5',
      '--datetime', '2020-02-01T00:00:00Z/2020-03-01T00:00:00Z', '--max-cloud-cover', '50', '--out-dir', out, '--quiet',
    ]);
    expect(r.code, r.stderr).toBe(0);
    // Three hits (the too-cloudy and the Landsat item are filtered by the server), two per page.
    const searches = api.requests.filter((q) => q.startsWith('POST /search'));
    expect(searches).toHaveLength(2);
    expect(JSON.parse(searches[0]!.slice('POST /search '.length))).toMatchObject({ collections: ['sentinel-2-l2a'], bbox: [-12, 24, -10.5, 25.5], query: { 'eo:cloud_cover': { lte: 50 } } });
    const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report.scenes.map((s: { output: string }) => path.basename(s.output)).sort()).toEqual(['S2A_29RKH_20200219_0_L2A.tif', 'S2A_29RKH_20200224_0_L2A.tif']);
    expect(report.discoverySkipped).toEqual([{ id: 'S2B_29RKH_20200221_0_L2A', reason: 'no asset for band B8A' }]);
    for (const s of report.scenes) expect(await readBand(s.output)).toEqual(reference);
    expectValidOutputs(out, ['S2A_29RKH_20200219_0_L2A', 'S2A_29RKH_20200224_0_L2A'], (name) => report.scenes.find((s: { output: string }) => s.output.endsWith(`${name}.tif`)).input);
    // Workers read the items from the API's item endpoint and the assets with range requests.
    expect(api.requests.some((q) => q.startsWith('GET /collections/sentinel-2-l2a/items/S2A_29RKH_20200224_0_L2A'))).toBe(true);
  }, 240_000);

  test('paging follows the next link (POST, merged body) to the last page; --limit stops early', async () => {
    api.requests.length = 0;
    const all = await discoverScenes({ stacApi: `${api.url}/`, collection: ['sentinel-2-l2a'] }, { defaultProductMask: 'none', log: () => {} });
    expect(all.scenes.map((s) => s.name)).toEqual(['S2A_29RKH_20200219_0_L2A', 'S2A_29RKH_20200224_0_L2A', 'S2A_29RKH_20200229_0_L2A']);
    expect(all.scenes.every((s) => s.productMask === 'none')).toBe(true);
    const posts = api.requests.filter((q) => q.startsWith('POST /search'));
    expect(posts).toHaveLength(2);
    expect(JSON.parse(posts[1]!.slice('POST /search '.length))).toMatchObject({ token: 'next:2', collections: ['sentinel-2-l2a'] });
    api.requests.length = 0;
    const two = await discoverScenes({ stacApi: api.url, collection: ['sentinel-2-l2a'], limit: 2 }, { defaultProductMask: 'scl', log: () => {} });
    expect(two.scenes).toHaveLength(2);
    expect(api.requests.filter((q) => q.startsWith('POST /search'))).toHaveLength(1);
  });

  test('a server that is not a STAC API: a one-line error naming it', async () => {
    const r = await runCli(['batch', '--stac-api', `${api.url}/nowhere`, '--out-dir', path.join(tmp, 'none')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n').pop()).toMatch(/error \[[A-Z_]+\]: .*\/nowhere\/search/);
  });
});

