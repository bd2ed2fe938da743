/**
 * The http I/O thread (raster/http-io-thread.ts): range reads carried by a thread of its own give
 * the same bytes as the file, keep their retries and their errors (code and words cross the
 * thread), and count in this thread's httpStats. Real sample band, real loopback http server.
 * Its own file: useIoThread() holds for the rest of the thread that calls it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { currentHttpReadOptions, fetchRange, httpStats, useIoThread } from '../raster/http-range.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { SAMPLE } from './helpers/cli.ts';
import { startStaticServer, type StaticServer } from './helpers/http-server.ts';

let server: StaticServer;
const band = readFileSync(path.join(SAMPLE, 'B02.tif'));
const options = { ...currentHttpReadOptions(), backoffMs: 10 };
const read = (start: number, end: number, file = 'B02.tif'): Promise<Uint8Array> =>
  fetchRange({ url: `${server.url}/${file}`, label: `band ${file}`, headers: {}, range: { start, end } }, options);

beforeAll(async () => {
  server = await startStaticServer(SAMPLE);
  useIoThread();
});
afterAll(async () => {
  await server.close();
});

describe('range reads through the I/O thread', () => {
  test('concurrent ranges come back whole and equal to the file, and are counted here', async () => {
    const before = httpStats();
    const step = Math.floor(band.length / 8);
    const ranges = Array.from({ length: 8 }, (_, i) => [i * step, i * step + step - 1] as const);
    const bodies = await Promise.all(ranges.map(([s, e]) => read(s, e)));
    bodies.forEach((b, i) => expect(Buffer.from(b).equals(band.subarray(ranges[i]![0], ranges[i]![1] + 1))).toBe(true));
    const after = httpStats();
    expect(after.requests.ok - before.requests.ok).toBe(8);
    expect(after.bytes - before.bytes).toBe(8 * step);
    // Carried by the other thread: its requests reached the server.
    expect(server.requests.filter((r) => r.startsWith('GET /B02.tif')).length).toBeGreaterThanOrEqual(8);
  });

  test('a 503 is retried there, the retries counted here', async () => {
    const before = httpStats().requests.retry;
    server.inject({ kind: 'status', status: 503 }, 2, 'B02');
    const body = await read(1000, 65_535);
    expect(Buffer.from(body).equals(band.subarray(1000, 65_536))).toBe(true);
    expect(httpStats().requests.retry - before).toBe(2);
  });

  test('a 404 comes back as the same CloudMaskError the reading thread would throw', async () => {
    const err = await read(0, 1023, 'B99.tif').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudMaskError);
    expect((err as CloudMaskError).code).toBe('INPUT_NOT_FOUND');
    expect((err as CloudMaskError).message).toMatch(/band B99\.tif.*not found \(HTTP 404\)/);
  });
});
