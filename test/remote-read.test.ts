/**
 * Remote reads and error classes, on the real 29RKH scene: ranges merged, faults a retry can fix
 * (503, 429 with Retry-After, resets, bodies cut halfway, stalls past the timeout) retried to a
 * read identical to the local one; what a retry cannot fix (a server ignoring Range, a corrupt
 * DEFLATE stream in a band) refused at once with a permanent code, in process and through the CLI.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { currentHttpReadOptions, httpStats, parseRetryAfter, retryDelay, setHttpReadOptions } from '../raster/http-range.ts';
import { HttpRangeSource, mergeRanges } from '../raster/http-source.ts';
import { openProductMaskAhead } from '../raster/product-mask.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import { closeTiff, openTiff } from '../raster/tiff-file.ts';
import type { SceneSource } from '../raster/types.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { WORKER_METRICS } from '../shared/metric-names.ts';
import { runCli, SAMPLE, spawnCli } from './helpers/cli.ts';
import { startStaticServer, type StaticServer } from './helpers/http-server.ts';
import { startNatsServer } from './helpers/nats-server.ts';

let tmp: string;
let server: StaticServer;
let local: Uint16Array;
let full: { x: number; y: number; width: number; height: number };
const defaults = currentHttpReadOptions();
const ITEM = 'S2A_29RKH_20200219_0_L2A.json';

/** The sample folder as a source of URLs on the test server. */
function remoteSource(): SceneSource {
  return resolveSourceSync(`${server.url}`);
}
function resolveSourceSync(base: string): SceneSource {
  const bands = ['B01', 'B02', 'B03', 'B04', 'B05', 'B06', 'B07', 'B08', 'B8A', 'B09', 'B11', 'B12'];
  return { kind: 'bands', bands: bands.map((b) => `${base}/${b}.tif`), scl: `${base}/SCL.tif`, metadata: { processingBaseline: null, boaOffsetApplied: null, id: null } } as SceneSource;
}

async function readRemote(): Promise<Uint16Array> {
  const reader = await openScene(remoteSource());
  try {
    return await reader.readWindow(full);
  } finally {
    await reader.close();
  }
}

/** A copy of the sample folder whose B04 has garbage in the middle of its first tile's DEFLATE stream. */
async function corruptCopy(dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(SAMPLE)) copyFileSync(path.join(SAMPLE, f), path.join(dir, f));
  const band = path.join(dir, 'B04.tif');
  const image = await (await fromFile(band)).getImage();
  const offset = Number(((await image.fileDirectory.loadValue('TileOffsets')) as ArrayLike<number>)[0]);
  const count = Number(((await image.fileDirectory.loadValue('TileByteCounts')) as ArrayLike<number>)[0]);
  const bytes = readFileSync(band);
  const mid = offset + Math.floor(count / 2);
  for (let i = mid; i < mid + 64; i++) bytes[i] = bytes[i]! ^ 0x5a;
  writeFileSync(band, bytes);
  return dir;
}

async function readMask(file: string): Promise<Buffer> {
  const image = await (await fromFile(file)).getImage();
  const [band] = (await image.readRasters({ interleave: false })) as unknown as Uint8Array[];
  return Buffer.from(band);
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-remote-'));
  // A copy of the sample whose STAC item names the bands on the test server.
  const served = path.join(tmp, 'served');
  mkdirSync(served);
  for (const f of readdirSync(SAMPLE)) copyFileSync(path.join(SAMPLE, f), path.join(served, f));
  server = await startStaticServer(served);
  const item = JSON.parse(readFileSync(path.join(served, ITEM), 'utf8'));
  for (const asset of Object.values(item.assets) as { href: string }[]) asset.href = `${server.url}/${path.basename(asset.href)}`;
  writeFileSync(path.join(served, ITEM), JSON.stringify(item));
  const reader = await openScene(await resolveSource(SAMPLE));
  full = { x: 0, y: 0, width: reader.geo.width, height: reader.geo.height };
  local = await reader.readWindow(full);
  await reader.close();
});
afterEach(() => {
  setHttpReadOptions(defaults);
  server.ignoreRange = false;
  server.clearFaults();
});
afterAll(async () => {
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('merging ranges', () => {
  test('near ranges become one request, far or too large ones do not', () => {
    const slices = [
      { offset: 5000, length: 1000 },
      { offset: 0, length: 1000 },
      { offset: 1500, length: 1000 },
      { offset: 100_000, length: 10 },
      { offset: 2400, length: 200 },
    ];
    expect(mergeRanges(slices, 600, 1 << 20)).toEqual([
      { start: 0, end: 2600, parts: [1, 2, 4] },
      { start: 5000, end: 6000, parts: [0] },
      { start: 100_000, end: 100_010, parts: [3] },
    ]);
    expect(mergeRanges(slices, 10_000, 1 << 20).map((m) => m.parts.length)).toEqual([4, 1]);
    expect(mergeRanges(slices, 10_000, 3000).map((m) => [m.start, m.end])).toEqual([[0, 2600], [5000, 6000], [100_000, 100_010]]);
  });

  test('Retry-After is honoured (seconds or a date), capped; without it the backoff doubles', () => {
    expect(parseRetryAfter('2')).toBe(2000);
    expect(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1))).toBe(10_000);
    expect(parseRetryAfter('soon')).toBeNull();
    const o = { backoffMs: 100, maxBackoffMs: 1000, maxRetryAfterMs: 5000 };
    expect(retryDelay(1, 3000, o)).toBe(3000);
    expect(retryDelay(1, 60_000, o)).toBe(5000);
    expect(retryDelay(3, null, o)).toBeGreaterThanOrEqual(200);
    expect(retryDelay(3, null, o)).toBeLessThanOrEqual(400);
    expect(retryDelay(9, null, o)).toBeLessThanOrEqual(1000);
  });
});

describe('reading the real scene over http', () => {
  test('identical to local, with fewer requests than tiles read', async () => {
    const before = server.requests.length;
    expect(Buffer.from((await readRemote()).buffer).equals(Buffer.from(local.buffer))).toBe(true);
    const gets = server.requests.slice(before).filter((r) => r.startsWith('GET'));
    // 12 bands: 4 tiles each at 10 m, 1 at 20 m and 60 m, plus headers; merged, far fewer requests.
    expect(gets.length).toBeLessThan(4 * 4 + 8 * 1 + 12);
  });

  test('tile reads are views into one merged request; geotiff.js and small reads get buffers of their own', async () => {
    const url = `${server.url}/B02.tif`;
    const file = readFileSync(path.join(tmp, 'served', 'B02.tif'));
    const source = new HttpRangeSource(url, 'band B02', file.length, {}, currentHttpReadOptions());
    const before = server.requests.length;
    const ranges = [{ offset: 70_000, length: 20_000 }, { offset: 95_000, length: 30_000 }];
    const views = await Promise.all(ranges.map((r) => source.fetchBytes(r)));
    expect(server.requests.length - before).toBe(1);
    expect(views[0]!.buffer).toBe(views[1]!.buffer);
    views.forEach((v, i) => expect(Buffer.from(v).equals(file.subarray(ranges[i]!.offset, ranges[i]!.offset + ranges[i]!.length))).toBe(true));
    const buffers = await source.fetch(ranges);
    buffers.forEach((b, i) => {
      expect(b.byteLength).toBe(ranges[i]!.length);
      expect(Buffer.from(b).equals(file.subarray(ranges[i]!.offset, ranges[i]!.offset + ranges[i]!.length))).toBe(true);
    });
    // A small read (out of a cached 64 KiB block, fetched with the larger range beside it) has bytes of its own.
    const [small, big] = await Promise.all([source.fetchBytes({ offset: 200_000, length: 100 }), source.fetchBytes({ offset: 262_144 + 10, length: 300_000 })]);
    expect(Buffer.from(small).equals(file.subarray(200_000, 200_100))).toBe(true);
    expect(small.buffer.byteLength).toBe(100);
    expect(Buffer.from(big).equals(file.subarray(262_154, 562_154))).toBe(true);
    await source.close();
  });

  test.each([
    ['503', { kind: 'status', status: 503 } as const, 3],
    ['429 with Retry-After', { kind: 'status', status: 429, retryAfter: '1' } as const, 1],
    ['connection reset', { kind: 'reset' } as const, 3],
    ['body cut halfway', { kind: 'cut' } as const, 3],
  ])('%s: retried, the read is identical to local', async (_name, fault, times) => {
    const retries = httpStats().requests.retry;
    const served = server.faultsServed;
    server.inject(fault, times, 'B0');
    expect(Buffer.from((await readRemote()).buffer).equals(Buffer.from(local.buffer))).toBe(true);
    expect(server.faultsServed - served).toBe(times);
    expect(httpStats().requests.retry - retries).toBe(times);
  });

  test('a stall past the timeout is retried', async () => {
    // Generous against a loaded machine: only the stalled answer should time out, but any slow one may.
    setHttpReadOptions({ timeoutMs: 1500, backoffMs: 10 });
    server.inject({ kind: 'stall', ms: 4000 }, 1, 'B02');
    const retries = httpStats().requests.retry;
    expect(Buffer.from((await readRemote()).buffer).equals(Buffer.from(local.buffer))).toBe(true);
    expect(server.faultsServed).toBeGreaterThan(0);
    expect(httpStats().requests.retry - retries).toBeGreaterThanOrEqual(1);
  });

  test('5xx past the attempts: TRANSIENT_IO naming the file and the status', async () => {
    setHttpReadOptions({ attempts: 2, backoffMs: 10 });
    server.inject({ kind: 'status', status: 502 }, 1000, 'B03');
    const err = await readRemote().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudMaskError);
    expect((err as CloudMaskError).code).toBe('TRANSIENT_IO');
    expect((err as CloudMaskError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/B03\.tif.*HTTP 502 \(2 attempts\)/);
  });

  test('a server ignoring Range is refused at once (BAD_INPUT), not retried, not downloaded', async () => {
    server.ignoreRange = true;
    const retries = httpStats().requests.retry;
    const err = await openScene(remoteSource()).catch((e: unknown) => e);
    expect((err as CloudMaskError).code).toBe('BAD_INPUT');
    expect((err as CloudMaskError).retryable).toBe(false);
    expect((err as Error).message).toMatch(/B0\d\.tif.*ignores Range requests \(HTTP 200/);
    expect(httpStats().requests.retry).toBe(retries);
  });

  test('opening a band costs one request: a range read of its first 64 KiB (size and version from the answer), no HEAD', async () => {
    const before = server.requests.length;
    const reader = await openScene(remoteSource());
    await reader.close();
    const opened = server.requests.slice(before);
    // 12 bands, each read once from byte 0; the sample's headers fit in the first block.
    expect(opened.filter((r) => r.startsWith('HEAD'))).toEqual([]);
    expect(opened.length).toBe(12);
    expect(opened.every((r) => / bytes=0-65535$/.test(r))).toBe(true);
  });

  test("the product mask's first request goes out ahead (beside the bands'); opening it then asks for nothing more; a missing one fails as it would", async () => {
    const scl = `${server.url}/SCL.tif`;
    const sclRequests = (): string[] => server.requests.filter((r) => r.startsWith('GET /SCL.tif'));
    const before = sclRequests().length;
    openProductMaskAhead('scl', remoteSource(), undefined);
    openProductMaskAhead('scl', remoteSource(), undefined); // once
    await new Promise((r) => setTimeout(r, 200));
    expect(sclRequests().length).toBe(before + 1);
    const file = await openTiff(scl, 'SCL band');
    expect(file.width).toBe(549);
    await closeTiff(file.tiff);
    expect(sclRequests().length).toBe(before + 1);
    // The next opening asks again (an answer is taken once).
    await closeTiff((await openTiff(scl, 'SCL band')).tiff);
    expect(sclRequests().length).toBe(before + 2);
    const missing = `${server.url}/nowhere/mask.tif`;
    openProductMaskAhead(missing, remoteSource(), undefined);
    const err = await openTiff(missing, 'product mask').catch((e: unknown) => e);
    expect((err as CloudMaskError).code).toBe('INPUT_NOT_FOUND');
    expect(server.requests.filter((r) => r.includes('/nowhere/mask.tif'))).toHaveLength(1);
  });

  test('a URL that is not a TIFF: BAD_INPUT at once, saying so', async () => {
    const dir = path.join(tmp, 'served', 'not-tiff');
    mkdirSync(dir, { recursive: true });
    for (const b of ['B01', 'B02', 'B03', 'B04', 'B05', 'B06', 'B07', 'B08', 'B8A', 'B09', 'B11', 'B12']) writeFileSync(path.join(dir, `${b}.tif`), readFileSync(path.join(SAMPLE, ITEM)));
    const err = await openScene(resolveSourceSync(`${server.url}/not-tiff`)).catch((e: unknown) => e);
    expect((err as CloudMaskError).code).toBe('BAD_INPUT');
    expect((err as Error).message).toMatch(/is not a TIFF \(no TIFF header\)/);
  });

  test('a missing file is INPUT_NOT_FOUND', async () => {
    const err = await openScene(resolveSourceSync(`${server.url}/nowhere`)).catch((e: unknown) => e);
    expect((err as CloudMaskError).code).toBe('INPUT_NOT_FOUND');
  });
});

describe('a corrupt DEFLATE stream in a real band is permanent', () => {
  test('in process: CORRUPT_INPUT naming the band file, not retryable', async () => {
    const dir = await corruptCopy(path.join(tmp, 'corrupt-inproc'));
    const reader = await openScene(await resolveSource(dir));
    try {
      const err = await reader.readWindow(full).catch((e: unknown) => e);
      expect((err as CloudMaskError).code).toBe('CORRUPT_INPUT');
      expect((err as CloudMaskError).retryable).toBe(false);
      expect((err as Error).message).toMatch(/band B04 .*B04\.tif: reading window .*does not decode/);
    } finally {
      await reader.close();
    }
  });

  test('embedded run: dead-lettered after one delivery with the reason, no output', async () => {
    const dir = await corruptCopy(path.join(tmp, 'corrupt-cli'));
    const out = path.join(tmp, 'corrupt-out', 'mask.tif');
    mkdirSync(path.dirname(out), { recursive: true });
    const r = await runCli(['run', '--s2-raster', dir, '--product-mask', 'none', '--out', out, '--quiet']);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/error \[DEAD_LETTER\]: .*after 1 delivery .*CORRUPT_INPUT: .*B04\.tif/);
    expect(readdirSync(path.dirname(out))).toEqual([]);
  });
});

describe('embedded runs over http', () => {
  test('with 503s, resets and cut bodies on the way: the mask equals the local run', async () => {
    const localOut = path.join(tmp, 'local.tif');
    expect((await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'none', '--out', localOut, '--quiet'])).code).toBe(0);
    const served = server.faultsServed;
    server.inject({ kind: 'status', status: 503, retryAfter: '1' }, 2);
    server.inject({ kind: 'reset' }, 2);
    server.inject({ kind: 'cut' }, 2);
    const out = path.join(tmp, 'remote.tif');
    const r = await runCli(['run', '--s2-raster', `${server.url}/${ITEM}`, '--product-mask', 'none', '--out', out, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(server.faultsServed - served).toBe(6);
    expect((await readMask(out)).equals(await readMask(localOut))).toBe(true);
  });

  test('a server ignoring Range: the run fails at once with BAD_INPUT and the reason', async () => {
    server.ignoreRange = true;
    const out = path.join(tmp, 'norange.tif');
    const r = await runCli(['run', '--s2-raster', `${server.url}/${ITEM}`, '--product-mask', 'none', '--out', out, '--quiet']);
    expect(r.code).toBe(3);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/error \[BAD_INPUT\]: .*\.tif: the server ignores Range requests/);
  });
});

describe('cluster mode over http', () => {
  test('a worker retries 503s and resets in place, counts them in its metrics, and the mask equals the local run', async () => {
    const nats = await startNatsServer();
    const common = ['--nats', nats.url, '--nats-prefix', 'rr', '--ack-wait-ms', '3000', '--max-deliveries', '2'];
    const worker = spawnCli(['worker', ...common, '--threads', '1', '--worker-id', 'rw', '--allow-root', `${server.url}/`, '--metrics-port', '0']);
    try {
      const metricsUrl = (await worker.waitFor(/metrics on http:\/\/\S+/)).replace('metrics on ', '');
      await worker.waitFor(/pulling from/);
      const localOut = path.join(tmp, 'cluster-local.tif');
      expect((await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'none', '--out', localOut, '--quiet'])).code).toBe(0);
      // The coordinator only opens the scene (HEAD probes, the first 64 KiB of each file): faults
      // on reads further in meet the worker's tile reads.
      const tileRead = (band: string) => (url: string, range: string): boolean => url.includes(band) && !range.startsWith('bytes=0-');
      const served = server.faultsServed;
      server.inject({ kind: 'status', status: 503 }, 2, tileRead('B08'));
      server.inject({ kind: 'reset' }, 2, tileRead('B11'));
      const out = path.join(tmp, 'cluster-remote.tif');
      const r = await runCli(['run', '--s2-raster', `${server.url}/${ITEM}`, '--product-mask', 'none', '--out', out, '--quiet', ...common]);
      expect(r.code, r.stderr).toBe(0);
      expect((await readMask(out)).equals(await readMask(localOut))).toBe(true);
      const text = await (await fetch(metricsUrl)).text();
      // name{labels} -> value, without the app/component labels every series carries.
      const series = new Map(text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => {
        const k = l.lastIndexOf(' ');
        return [l.slice(0, k).replace(/\b(app|component)="[^"]*",?/g, '').replace(',}', '}').replace('{}', ''), Number(l.slice(k + 1))] as const;
      }));
      const value = (name: string): number => series.get(name) ?? NaN;
      expect(value(`${WORKER_METRICS.httpRequests}{outcome="ok"}`)).toBeGreaterThan(0);
      expect(value(`${WORKER_METRICS.httpRequests}{outcome="error"}`)).toBe(0);
      expect(value(WORKER_METRICS.tileDecodes)).toBeGreaterThan(0);
      expect(server.faultsServed - served).toBe(4);
      expect(value(WORKER_METRICS.httpRetries)).toBe(4);
      expect(value(`${WORKER_METRICS.httpRequests}{outcome="retry"}`)).toBe(4);
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
      await nats.close();
    }
  });
});
