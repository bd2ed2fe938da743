/**
 * --http-header against a local server that refuses requests without the header: the real
 * 29RKH scene served as a STAC item with its band files. Without the header: one clear line and
 * no output; with it (flag or ICM_HTTP_HEADERS, embedded or a separate worker process over NATS):
 * the same output as the local run. The value is never printed and never put into a job.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEmbedded } from '../cli/embedded.ts';
import { parseHttpHeaders, splitHeaderLines } from '../cli/options.ts';
import { runScene } from '../coordinator/scene-run.ts';
import { BAND_NAMES } from '../raster/bands.ts';
import { loadProductMask } from '../raster/product-mask.ts';
import { unpackMask } from '../shared/packed-mask.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import { encodeMessage, type TileJob } from '../shared/messages.ts';
import { DEFAULT_PARAMS } from '../shared/params.ts';
import { defaultModelsDir } from '../worker/models.ts';
import { DATA, runCli, SAMPLE, spawnCli } from './helpers/cli.ts';
import { startStaticServer, type StaticServer } from './helpers/http-server.ts';
import { startNatsServer } from './helpers/nats-server.ts';

const SECRET = 'Bearer s3cret-token-4711';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-http-headers-'));
let server: StaticServer;
let item: string;
let reference: Buffer;

async function readMask(file: string): Promise<Buffer> {
  const tiff = await fromFile(file);
  const [band] = (await (await tiff.getImage()).readRasters({ interleave: false })) as unknown as Uint8Array[];
  await tiff.close();
  return Buffer.from(band!);
}

beforeAll(async () => {
  const root = path.join(tmp, 'www');
  mkdirSync(root);
  server = await startStaticServer(root, { requireHeaders: { authorization: SECRET } });
  // The sample's STAC item with its hrefs pointing at this server, beside links to the band files.
  const stac = JSON.parse(readFileSync(path.join(SAMPLE, 'S2A_29RKH_20200219_0_L2A.json'), 'utf8'));
  for (const a of Object.values(stac.assets) as { href: string }[]) a.href = `${server.url}/${path.basename(a.href)}`;
  writeFileSync(path.join(root, 'item.json'), JSON.stringify(stac));
  for (const b of [...BAND_NAMES, 'SCL']) symlinkSync(path.join(SAMPLE, `${b}.tif`), path.join(root, `${b}.tif`));
  item = `${server.url}/item.json`;
  const out = path.join(tmp, 'local.tif');
  const r = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', out, '--quiet', '--threads', '2']);
  expect(r.code, r.stderr).toBe(0);
  reference = await readMask(out);
});

afterAll(async () => {
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const run = (out: string, extra: string[], env?: NodeJS.ProcessEnv): ReturnType<typeof runCli> =>
  runCli(['run', '--s2-raster', item, '--product-mask', 'scl', '--out', out, '--quiet', '--threads', '2', ...extra], { env });

describe('--http-header', () => {
  test('parsing: Name: value lines; a malformed entry is named by position, its value never echoed', () => {
    expect(parseHttpHeaders(['Authorization: Bearer a:b', ' X-Key :v '], '--http-header')).toEqual({ Authorization: 'Bearer a:b', 'X-Key': 'v' });
    expect(splitHeaderLines('A: 1\\nB: 2\n\nC: 3\r\n')).toEqual(['A: 1', 'B: 2', 'C: 3']);
    expect(() => parseHttpHeaders(['A: 1', 'no colon secret-value'], '--http-header')).toThrow(/^--http-header entry 2 must be 'Name: value'/);
    let message = '';
    try {
      parseHttpHeaders(['bad name: secret-value'], 'ICM_HTTP_HEADERS');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^ICM_HTTP_HEADERS entry 1 must be/);
    expect(message).not.toContain('secret-value');
  });

  test('without the header: HTTP 401 as one clear line, exit 3, no output written', async () => {
    const out = path.join(tmp, 'refused.tif');
    const r = await run(out, []);
    expect(r.code).toBe(3);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/INPUT_NOT_FOUND.*item\.json refused \(HTTP 401\).*--http-header/);
    expect(existsSync(out)).toBe(false);
    // A malformed header is a usage error before any request.
    const before = server.requests.length;
    const bad = await run(path.join(tmp, 'bad.tif'), ['--http-header', `Authorization ${SECRET}`]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/BAD_OPTION.*--http-header entry 1 must be 'Name: value'/);
    expect(bad.stderr).not.toContain('s3cret');
    expect(server.requests.length).toBe(before);
  });

  test('with --http-header (and with ICM_HTTP_HEADERS): every request carries it, output identical to the local run, the value never printed', async () => {
    const refusedBefore = server.refused.length;
    const flagOut = path.join(tmp, 'flag.tif');
    const a = await run(flagOut, ['--http-header', `Authorization: ${SECRET}`, '--http-header', 'X-Trace: 1', '--json']);
    expect(a.code, a.stderr).toBe(0);
    expect((await readMask(flagOut)).equals(reference)).toBe(true);
    const envOut = path.join(tmp, 'env.tif');
    const b = await run(envOut, [], { ICM_HTTP_HEADERS: `X-Other: 2\\nAuthorization: ${SECRET}` });
    expect(b.code, b.stderr).toBe(0);
    expect((await readMask(envOut)).equals(reference)).toBe(true);
    expect(server.refused.length).toBe(refusedBefore);
    // Range reads of the band files went through the server, with the header.
    expect(server.requests.some((q) => /^GET \/B05\.tif bytes=/.test(q))).toBe(true);
    for (const r of [a, b]) expect(r.stdout + r.stderr).not.toContain('s3cret');
  });

  test('a STAC item over http with an MSK_CLOUDS_B00.gml asset: item, bands and GML all fetched with the header', async () => {
    // The T01UBT SAFE's GeoTIFFs behind the server, an older-baseline item naming a GML in its CRS.
    const granule = path.join(DATA, 's2-l2a-T01UBT-safe', 'S2B_MSIL2A_20230122T231849_N0400_R087_T01UBT_20230124T042703.SAFE', 'GRANULE', 'L2A_T01UBT_A030715_20230122T231921', 'IMG_DATA');
    const www = path.join(tmp, 'www', 't01ubt');
    mkdirSync(www);
    const keys: Record<string, string> = { B01: 'coastal', B02: 'blue', B03: 'green', B04: 'red', B05: 'rededge1', B06: 'rededge2', B07: 'rededge3', B08: 'nir', B8A: 'nir08', B09: 'nir09', B11: 'swir16', B12: 'swir22', SCL: 'scl' };
    const assets: Record<string, { href: string }> = {};
    for (const [band, key] of Object.entries(keys)) {
      const res = ['B02', 'B03', 'B04', 'B08'].includes(band) ? 'R10m' : ['B01', 'B09'].includes(band) ? 'R60m' : 'R20m';
      const name = `T01UBT_20230122T231849_${band}_${res.slice(1)}.tif`;
      symlinkSync(path.join(granule, res, name), path.join(www, name));
      assets[key] = { href: name };
    }
    const ring = [210000, 5790000, 260000, 5790000, 260000, 5740000, 210000, 5740000, 210000, 5790000].join(' ');
    writeFileSync(path.join(www, 'MSK_CLOUDS_B00.gml'), [
      '<eop:Mask xmlns:eop="http://www.opengis.net/eop/2.0" xmlns:gml="http://www.opengis.net/gml/3.2">',
      '<gml:boundedBy><gml:Envelope srsName="urn:ogc:def:crs:EPSG:8.7:32601"><gml:lowerCorner>210000 5740000</gml:lowerCorner><gml:upperCorner>260000 5790000</gml:upperCorner></gml:Envelope></gml:boundedBy>',
      `<eop:maskMembers><eop:MaskFeature gml:id="OPAQUE.0"><eop:maskType>OPAQUE</eop:maskType><eop:extentOf><gml:Polygon><gml:exterior><gml:LinearRing><gml:posList srsDimension="2">${ring}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></eop:extentOf></eop:MaskFeature></eop:maskMembers>`,
      '</eop:Mask>',
    ].join('\n'));
    assets.clouds = { href: 'MSK_CLOUDS_B00.gml' };
    writeFileSync(path.join(www, 'item.json'), JSON.stringify({ type: 'Feature', id: 'T01UBT-old', properties: { 's2:processing_baseline': '02.14' }, assets }));
    const url = `${server.url}/t01ubt/item.json`;
    const http = { headers: { Authorization: SECRET } };
    const refusedBefore = server.refused.length;
    const source = await resolveSource(url, { http });
    expect(source.kind === 'bands' && source.qualityMasks).toEqual({ classi: null, cloudsGml: `${server.url}/t01ubt/MSK_CLOUDS_B00.gml` });
    const scene = await openScene(source, { http });
    try {
      const mask = await loadProductMask('product', scene, { http });
      expect(mask.source).toBe('MSK_CLOUDS_B00.gml');
      // 50 km x 50 km at 1098 m: about 45 x 45 pixels burned.
      const burned = unpackMask(mask.bits!).reduce((n: number, v: number) => n + v, 0);
      expect(burned).toBeGreaterThan(40 * 40);
      expect(burned).toBeLessThan(47 * 47);
      expect(server.refused.length).toBe(refusedBefore);
      // Without the header the GML fetch is refused with the clear line.
      await expect(loadProductMask('product', scene)).rejects.toThrow(/MSK_CLOUDS_B00\.gml http:.*refused \(HTTP 401\)/);
    } finally {
      await scene.close();
    }
    await expect(resolveSource(url)).rejects.toThrow(/STAC item http:.*item\.json refused \(HTTP 401\)/);
  });

  test('in-process: the coordinator reads with the headers and no job it publishes carries them', async () => {
    const embedded = startEmbedded({ threads: 2, modelsDir: defaultModelsDir(), httpHeaders: { Authorization: SECRET } });
    const jobs: TileJob[] = [];
    const submit = embedded.transport.submit.bind(embedded.transport);
    embedded.transport.submit = async (job) => {
      jobs.push(job);
      return submit(job);
    };
    try {
      const out = path.join(tmp, 'in-process.tif');
      await runScene({ input: item, productMask: 'scl', out }, embedded.transport, { params: DEFAULT_PARAMS, http: { headers: { Authorization: SECRET } } });
      expect((await readMask(out)).equals(reference)).toBe(true);
    } finally {
      await embedded.close();
    }
    expect(jobs.length).toBeGreaterThan(0);
    for (const job of jobs) expect(Buffer.from(encodeMessage(job)).includes('s3cret')).toBe(false);
  });

  test('cluster mode: a worker process given --http-header reads the sources jobs name', async () => {
    const nats = await startNatsServer();
    const common = ['--nats', nats.url, '--nats-prefix', 'hh', '--ack-wait-ms', '3000', '--max-deliveries', '2'];
    const worker = spawnCli(['worker', ...common, '--threads', '1', '--worker-id', 'hw', '--allow-root', `${server.url}/`, '--http-header', `Authorization: ${SECRET}`]);
    try {
      await worker.waitFor(/pulling from/);
      const out = path.join(tmp, 'cluster.tif');
      const r = await run(out, [...common, '--http-header', `Authorization: ${SECRET}`]);
      expect(r.code, r.stderr).toBe(0);
      expect((await readMask(out)).equals(reference)).toBe(true);
    } finally {
      worker.child.kill('SIGTERM');
      const w = await worker.exited;
      await nats.close();
      expect(w.stdout + w.stderr).not.toContain('s3cret');
    }
  });
});
