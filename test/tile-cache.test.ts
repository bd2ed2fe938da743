/**
 * The decoded-tile cache shared by chip threads (raster/tile-cache.ts), and the reads that go
 * through it: hits, one decode for concurrent requests, priority-then-LRU eviction, failures,
 * and windows read through the cache equal to windows read without it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import { createTileCacheHandle, TileCache } from '../raster/tile-cache.ts';
import { closeTiff, openTiff, readSamples, undoHorizontalDifferencing } from '../raster/tiff-file.ts';
import { SAMPLE } from './helpers/cli.ts';

const KB = 1024;
const bytes = (n: number, fill: number): ArrayBuffer => new Uint8Array(n).fill(fill).buffer;

/** A cache of `slots` 2 KiB slots, and `get` that reads a tile and lets it go, recording each load. */
function recordingCache(slots: number): { cache: TileCache; loads: string[]; get(key: string, priority: number): Promise<void> } {
  const cache = new TileCache(createTileCacheHandle({ bytes: slots * 2 * KB, slotBytes: 2 * KB }));
  const loads: string[] = [];
  const get = async (key: string, priority: number): Promise<void> => {
    const l = await cache.get(key, async () => (loads.push(key), bytes(10, 1)), priority);
    l.release();
  };
  return { cache, loads, get };
}

describe('TileCache', () => {
  test('decodes once, then hits; leases see the decoded bytes', async () => {
    const cache = new TileCache(createTileCacheHandle({ bytes: 8 * KB, slotBytes: 2 * KB }));
    let loads = 0;
    const load = async (): Promise<ArrayBuffer> => (loads++, bytes(1000, 7));
    const a = await cache.get('a', load);
    expect(a.bytes.length).toBe(1000);
    expect(a.bytes.every((v) => v === 7)).toBe(true);
    a.release();
    const again = await cache.get('a', load);
    again.release();
    expect(loads).toBe(1);
    expect(cache.stats).toMatchObject({ hits: 1, misses: 1 });
  });

  test('concurrent requests for one tile decode it once; the others wait for it', async () => {
    const cache = new TileCache(createTileCacheHandle({ bytes: 8 * KB, slotBytes: 2 * KB }));
    let loads = 0;
    const load = async (): Promise<ArrayBuffer> => {
      loads++;
      await new Promise((r) => setTimeout(r, 30));
      return bytes(100, 3);
    };
    const leases = await Promise.all([cache.get('t', load), cache.get('t', load), cache.get('t', load)]);
    expect(loads).toBe(1);
    expect(leases.every((l) => l.bytes[0] === 3)).toBe(true);
    leases.forEach((l) => l.release());
    expect(cache.stats.waits).toBeGreaterThanOrEqual(2);
  });

  test('a tile read unclaimed is claimed for its decode: concurrent reads, one decode, the others wait or count a read for nothing', async () => {
    const cache = new TileCache(createTileCacheHandle({ bytes: 8 * KB, slotBytes: 2 * KB }));
    const calls = { fetch: 0, decode: 0 };
    const load = {
      fetch: async (): Promise<Uint8Array> => (calls.fetch++, await new Promise((r) => setTimeout(r, 10)), new Uint8Array(bytes(4, 1))),
      decode: async (raw: Uint8Array): Promise<ArrayBuffer> => (calls.decode++, await new Promise((r) => setTimeout(r, 30)), bytes(100, raw[0]! + 1)),
    };
    // Both read before either decodes: one decode, and the other's read was for nothing.
    const [a, b] = await Promise.all([cache.get('t', load), cache.get('t', load)]);
    expect(calls).toEqual({ fetch: 2, decode: 1 });
    expect(a.bytes[0]).toBe(2);
    expect(b.bytes[0]).toBe(2);
    expect(cache.stats).toMatchObject({ misses: 1, readTwice: 1 });
    a.release();
    b.release();
    // One arriving while the decode runs waits for it and reads nothing.
    const first = cache.get('u', load);
    await new Promise((r) => setTimeout(r, 20));
    const second = cache.get('u', load);
    const [c, d] = await Promise.all([first, second]);
    expect(calls).toEqual({ fetch: 3, decode: 2 });
    expect(d.bytes[0]).toBe(2);
    expect(cache.stats.waits).toBeGreaterThanOrEqual(1);
    c.release();
    d.release();
    // A failed decode leaves the slot free for the next request.
    await expect(cache.get('v', { fetch: load.fetch, decode: async () => Promise.reject(new Error('corrupt tile')) })).rejects.toThrow('corrupt tile');
    const v = await cache.get('v', load);
    expect(v.bytes[0]).toBe(2);
    v.release();
  });

  test('a tile decoded into its slot needs no decode(); one that cannot be falls back to it; a remote read waits for the claim', async () => {
    const cache = new TileCache(createTileCacheHandle({ bytes: 8 * KB, slotBytes: 2 * KB }));
    const calls = { fetch: 0, decode: 0, into: 0 };
    const load = (fits: boolean, claimBeforeRead = false) => ({
      claimBeforeRead,
      fetch: async (): Promise<Uint8Array> => (calls.fetch++, await new Promise((r) => setTimeout(r, 10)), new Uint8Array(bytes(4, 5))),
      decode: async (raw: Uint8Array): Promise<ArrayBuffer> => (calls.decode++, bytes(300, raw[0]! + 1)),
      decodeInto: (raw: Uint8Array, slot: Uint8Array): number | null => {
        calls.into++;
        expect(slot.length).toBe(2 * KB);
        if (!fits) return null;
        slot.fill(raw[0]! + 2, 0, 200);
        return 200;
      },
    });
    const a = await cache.get('a', load(true));
    expect(a.bytes.length).toBe(200);
    expect(a.bytes.every((v) => v === 7)).toBe(true);
    a.release();
    expect(calls).toEqual({ fetch: 1, decode: 0, into: 1 });
    const b = await cache.get('b', load(false));
    expect(b.bytes.length).toBe(300);
    expect(b.bytes.every((v) => v === 6)).toBe(true);
    b.release();
    expect(calls).toEqual({ fetch: 2, decode: 1, into: 2 });
    // Claimed before the read: a second request waits for the first instead of reading too.
    const [c, d] = await Promise.all([cache.get('c', load(true, true)), cache.get('c', load(true, true))]);
    expect(calls).toEqual({ fetch: 3, decode: 1, into: 3 });
    expect(d.bytes[0]).toBe(7);
    c.release();
    d.release();
  });

  test("a remote tile's bytes are handed over: a thread waiting for it decodes them, the one that read them leases the result", async () => {
    // Two TileCache objects on one handle, as two chip threads have.
    const handle = createTileCacheHandle({ bytes: 8 * KB, slotBytes: 2 * KB });
    const reader = new TileCache(handle);
    const other = new TileCache(handle);
    const fetches: string[] = [];
    const decodedBy: string[] = [];
    const sleep = (ms: number): Promise<unknown> => new Promise((r) => setTimeout(r, ms));
    const load = (who: string, corrupt = false) => ({
      claimBeforeRead: true,
      fetch: async (): Promise<Uint8Array> => (fetches.push(who), await sleep(20), new Uint8Array([9, 8, 7])),
      decode: async (): Promise<ArrayBuffer> => Promise.reject(new Error('decodeInto decodes these')),
      // Reversed and doubled: a decode reading the slot it writes (not a copy) comes out wrong.
      decodeInto: (raw: Uint8Array, slot: Uint8Array): number => {
        decodedBy.push(who);
        if (corrupt) throw new Error('corrupt tile');
        for (let i = 0; i < 300; i++) slot[i] = raw[raw.length - 1 - (i % raw.length)]! * 2;
        return 300;
      },
    });
    const expected = [14, 16, 18, 14, 16, 18];
    const first = reader.get('t', load('reader'));
    await sleep(5);
    const [a, b] = await Promise.all([first, other.get('t', load('other'))]);
    expect(fetches).toEqual(['reader']);
    expect(decodedBy).toEqual(['other']);
    expect(Array.from(a.bytes.subarray(0, 6))).toEqual(expected);
    expect(Array.from(b.bytes.subarray(0, 6))).toEqual(expected);
    expect(a.bytes.length).toBe(300);
    expect(other.stats).toMatchObject({ takenOver: 1, misses: 0 });
    expect(reader.stats).toMatchObject({ handedOver: 1, takenOver: 0, misses: 1, readTwice: 0 });
    a.release();
    b.release();
    // Nobody else waits for it: the reader decodes its own bytes, nothing handed over (no copy).
    const u = await reader.get('u', load('reader'));
    expect(decodedBy).toEqual(['other', 'reader']);
    expect(reader.stats.handedOver).toBe(1);
    expect(Array.from(u.bytes.subarray(0, 3))).toEqual(expected.slice(0, 3));
    u.release();
    // Bytes that do not decode: the taker fails, then the reader (its own decode), and the slot is free again.
    const bad = reader.get('v', load('reader', true));
    await sleep(5);
    await expect(other.get('v', load('other', true))).rejects.toThrow('corrupt tile');
    await expect(bad).rejects.toThrow('corrupt tile');
    const v = await other.get('v', load('other'));
    expect(Array.from(v.bytes.subarray(0, 3))).toEqual(expected.slice(0, 3));
    v.release();
  });

  test('evicts the lowest priority first, then the least recently used; held tiles stay', async () => {
    const { cache, loads, get } = recordingCache(3);
    await get('low', 0.1);
    await get('high-old', 0.9);
    await get('high-new', 0.9);
    await get('next', 0.9); // evicts 'low' (lowest priority) although it is not the oldest
    await get('high-old', 0.9);
    await get('high-new', 0.9);
    expect(loads).toEqual(['low', 'high-old', 'high-new', 'next']);
    await get('low', 0.1); // evicts 'next', the least recently used of equal priority
    await get('high-old', 0.9);
    expect(loads).toEqual(['low', 'high-old', 'high-new', 'next', 'low']);

    const held = await cache.get('held', async () => bytes(10, 9), 0);
    await get('x', 0.5);
    await get('y', 0.5);
    await get('z', 0.5);
    expect(held.bytes[0]).toBe(9);
    held.release();
  });

  test('a finished scene\'s tiles go before the next scene\'s own, whatever their priorities', async () => {
    const { loads, get } = recordingCache(4);
    // Scene A ends at its bottom rows (high priority); scene B starts at its top (low priority).
    for (const k of ['a1', 'a2', 'a3', 'a4']) await get(k, 0.95);
    await get('b1', 0.05);
    for (let i = 0; i < 4; i++) await get('b1', 0.05); // scene B goes on; A is not used again
    await get('b2', 0.05); // evicts a stale tile of A, not b1
    await get('b3', 0.05);
    await get('b1', 0.05);
    await get('b2', 0.05);
    expect(loads).toEqual(['a1', 'a2', 'a3', 'a4', 'b1', 'b2', 'b3']);
  });

  test('a failed decode leaves nothing behind and is retried by the next request', async () => {
    const cache = new TileCache(createTileCacheHandle({ bytes: 4 * KB, slotBytes: 2 * KB }));
    await expect(cache.get('bad', async () => Promise.reject(new Error('corrupt tile')))).rejects.toThrow('corrupt tile');
    const ok = await cache.get('bad', async () => bytes(10, 5));
    expect(ok.bytes[0]).toBe(5);
    ok.release();
  });

  test('tiles larger than a slot, or met when every slot is held, are served uncached', async () => {
    const cache = new TileCache(createTileCacheHandle({ bytes: 2 * KB, slotBytes: 2 * KB })); // 1 slot
    const big = await cache.get('big', async () => bytes(3 * KB, 1));
    expect(big.bytes.length).toBe(3 * KB);
    const held = await cache.get('a', async () => bytes(10, 2));
    const other = await cache.get('b', async () => bytes(10, 3));
    expect([held.bytes[0], other.bytes[0]]).toEqual([2, 3]);
    [big, held, other].forEach((l) => l.release());
    expect(cache.stats.uncached).toBe(2);
  });
});

describe('reads through the cache', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-tilecache-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  test('predictor 2 is undone as the TIFF spec says (wrapping per sample type)', () => {
    const rowLength = 6;
    const original = Uint16Array.from([1, 65535, 3, 0, 40000, 2, 9, 9, 9, 1, 2, 65000]);
    const diff = original.slice();
    for (let r = 0; r < 2; r++) for (let i = rowLength - 1; i > 0; i--) diff[r * rowLength + i] = diff[r * rowLength + i]! - diff[r * rowLength + i - 1]!;
    undoHorizontalDifferencing(diff, rowLength, 1);
    expect(Array.from(diff)).toEqual(Array.from(original));
  });

  test('a tiled DEFLATE predictor-2 file reads the same with and without the cache', async () => {
    const width = 300;
    const height = 200;
    const data = new Uint16Array(width * height).map((_, i) => (i * 2654435761) % 65536);
    const geo = { width, height, origin: [0, 0] as [number, number], pixelSize: [10, 10] as [number, number], epsg: 32629, geoKeyDirectory: null, geoAsciiParams: null, geoDoubleParams: null };
    const file = path.join(tmp, 'p2.tif');
    await writeGeoTiff(file, { width, height, data, geo, tileSize: 64, predictor: 2 });
    const f = await openTiff(file, 'test');
    try {
      const cache = new TileCache(createTileCacheHandle({ bytes: 64 * KB, slotBytes: 8 * KB }));
      const win = { x: 17, y: 23, width: 201, height: 150 };
      const [plain] = await readSamples(f, win, [0]);
      const [first] = await readSamples(f, win, [0], cache);
      const [second] = await readSamples(f, win, [0], cache);
      const expected = new Uint16Array(win.width * win.height);
      for (let j = 0; j < win.height; j++) expected.set(data.subarray((win.y + j) * width + win.x, (win.y + j) * width + win.x + win.width), j * win.width);
      for (const got of [plain, first, second]) expect(Buffer.from((got as Uint16Array).buffer).equals(Buffer.from(expected.buffer))).toBe(true);
      expect(cache.stats.hits).toBeGreaterThan(0);
    } finally {
      await closeTiff(f.tiff);
    }
  });

  test('scene windows read through a cache, into a reused buffer, equal fresh reads', async () => {
    const source = await resolveSource(SAMPLE);
    // Room for every tile of both windows: nothing is evicted or decoded uncached, so the hits
    // below do not depend on how the concurrent band reads interleave.
    const cache = new TileCache(createTileCacheHandle({ bytes: 128 * 2 ** 20 }));
    const cached = await openScene(source, { tileCache: cache });
    const fresh = await openScene(source);
    try {
      const buf = new Uint16Array(12 * 300 * 200).fill(123);
      // Inside, then partly outside the 1098x1098 scene (the reused buffer must come back 0 there).
      for (const win of [{ x: 400, y: 380, width: 300, height: 200 }, { x: 950, y: -50, width: 300, height: 200 }]) {
        const a = await cached.readWindow(win, undefined, buf);
        const b = await fresh.readWindow(win);
        expect(a).toBe(buf);
        expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
      }
      // The first window again: every tile from the cache.
      const before = { ...cache.stats };
      await cached.readWindow({ x: 400, y: 380, width: 300, height: 200 }, undefined, buf);
      expect(cache.stats.misses).toBe(before.misses);
      expect(cache.stats.hits).toBeGreaterThan(before.hits);
    } finally {
      await cached.close();
      await fresh.close();
    }
  });
});
