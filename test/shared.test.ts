/** Unit tests of the pure modules both processes agree on. */
import { describe, expect, test } from 'vitest';
import { FlowGate } from '../coordinator/flow.ts';
import { chipAtPosition, nextGroup } from '../coordinator/dispatch.ts';
import { classesOf, classify, flagsOf, Stitcher } from '../coordinator/stitch.ts';
import { sceneLayout } from '../shared/tiling.ts';
import { parseArchiveManifest } from '../shared/archive.ts';
import { getBit, packBits } from '../shared/bitpack.ts';
import { countSet, emptyPacked, orBitsInto, packMask, unpackMask } from '../shared/packed-mask.ts';
import { CloudMaskError, fromErrorData, toErrorData } from '../shared/errors.ts';
import { decodeJob, decodeOutcome, encodeMessage, MAX_MESSAGE_BYTES, unionWindow, type TileJob, type TileResult } from '../shared/messages.ts';
import { DEFAULT_PARAMS, resolveParams } from '../shared/params.ts';

const job = (): TileJob => ({
  type: 'tile-job',
  v: 1,
  runKey: 'abc-123',
  chips: [
    { chipIndex: 0, read: { x: 0, y: 0, width: 512, height: 512 }, write: { x: 0, y: 0, width: 448, height: 448 } },
    { chipIndex: 1, read: { x: 384, y: 0, width: 512, height: 512 }, write: { x: 448, y: 0, width: 384, height: 448 } },
  ],
  source: { kind: 'stacked', href: '/data/scene.tif' },
  models: { cloud: 'c.onnx', shadow: 's.onnx' },
  thresholds: { cloud: 0.3, shadow: 0.2 },
  harmonize: false,
  withProbabilities: false,
});

describe('messages', () => {
  test('a job round-trips through msgpack, typed arrays included', () => {
    const j = job();
    j.chips = [j.chips[0]];
    j.pixels = new Uint16Array(12 * 512 * 512).map((_, i) => i % 65535);
    const back = decodeJob(encodeMessage(j));
    expect(back.pixels).toBeInstanceOf(Uint16Array);
    expect(back.pixels!.length).toBe(12 * 512 * 512);
    expect(back.pixels![12345]).toBe(12345);
    expect(back.chips).toEqual(j.chips);
  });

  test('a result round-trips and is checked against its window', () => {
    const count = 10 * 3;
    const r: TileResult = { type: 'tile-result', v: 1, runKey: 'k', chipIndex: 2, worker: 'w', write: { x: 0, y: 0, width: 10, height: 3 }, cloud: packBits(new Uint8Array(count).fill(1)), shadow: packBits(new Uint8Array(count)), nodata: packBits(new Uint8Array(count)), skipped: false, timings: { readMs: 1, inferenceMs: 5, cloudMs: 1, shadowMs: 1, thresholdMs: 1, modelLoadMs: 0 } };
    expect(decodeOutcome(encodeMessage(r))).toMatchObject({ chipIndex: 2, skipped: false });
    expect(() => decodeOutcome(encodeMessage({ ...r, cloud: new Uint8Array(2) }))).toThrow(/cloud: must be 4 packed bytes/);
  });

  test('malformed jobs are rejected with BAD_MESSAGE naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [{ ...job(), v: 2 }, /unsupported version 2/],
      [{ ...job(), runKey: 'a.b' }, /runKey/],
      [{ ...job(), chips: [] }, /chips must list 1 to/],
      [{ ...job(), thresholds: { cloud: 2, shadow: 0.2 } }, /thresholds/],
      [{ ...job(), source: { kind: 'bands', bands: ['x'] } }, /source/],
      [{ ...job(), chips: [{ chipIndex: 0, read: { x: 0, y: 0, width: 10, height: 10 }, write: { x: 5, y: 5, width: 10, height: 10 } }] }, /inside the read window/],
      [{ ...job(), type: 'tile-result' }, /expected tile-job/],
    ];
    for (const [msg, re] of cases) {
      let err: unknown;
      try {
        decodeJob(encodeMessage(msg as TileJob));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CloudMaskError);
      expect((err as CloudMaskError).code).toBe('BAD_MESSAGE');
      expect((err as Error).message).toMatch(re);
    }
    expect(() => decodeJob(new TextEncoder().encode('not msgpack at all'))).toThrow(/not msgpack/);
    expect(() => decodeJob(new Uint8Array(MAX_MESSAGE_BYTES + 1))).toThrow(/over the/);
  });

  test('the union window bounds every chip', () => {
    expect(unionWindow(job().chips)).toEqual({ x: 0, y: 0, width: 896, height: 512 });
  });
});

describe('errors cross boundaries as data', () => {
  test('code and retryability survive', () => {
    const e = fromErrorData(toErrorData(new CloudMaskError('TRANSIENT_IO', 'flaky')));
    expect(e.code).toBe('TRANSIENT_IO');
    expect(e.retryable).toBe(true);
    expect(fromErrorData(toErrorData(new Error('boom')))).toMatchObject({ code: 'INTERNAL', message: 'boom' });
    expect(new CloudMaskError('BAD_INPUT', 'x').retryable).toBe(false);
  });
});

describe('bit packing and stitching', () => {
  test('pack then OR into a raster at an offset', () => {
    const values = Uint8Array.from({ length: 7 * 5 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0);
    const packed = packBits(values);
    for (let i = 0; i < values.length; i++) expect(getBit(packed, i)).toBe(values[i]);
    const target = emptyPacked(20, 10);
    orBitsInto(target, packed, 7, 5, 3, 4);
    const raster = unpackMask(target);
    for (let r = 0; r < 5; r++) for (let c = 0; c < 7; c++) expect(raster[(4 + r) * 20 + 3 + c]).toBe(values[r * 7 + c]);
    expect(countSet(target)).toBe(values.reduce((a, v) => a + v, 0));
  });

  test('blocks of any size at any offset land bit for bit, OR-ed with what is there (against a per-pixel reference)', () => {
    let seed = 7;
    const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    for (let t = 0; t < 200; t++) {
      const W = 1 + rand(150);
      const H = 1 + rand(6);
      const w = 1 + rand(W);
      const h = 1 + rand(H);
      const x = rand(W - w + 1);
      const y = rand(H - h + 1);
      const density = rand(3); // sparse, half, dense: runs of zeros and of ones both get tried
      const block = Uint8Array.from({ length: w * h }, () => (density === 0 ? (rand(9) === 0 ? 1 : 0) : density === 1 ? rand(2) : rand(9) === 0 ? 0 : 1));
      const before = Uint8Array.from({ length: W * H }, () => (rand(5) === 0 ? 1 : 0));
      const plane = emptyPacked(W, H);
      const init = packBits(before);
      orBitsInto(plane, init, W, H, 0, 0);
      orBitsInto(plane, packBits(block), w, h, x, y);
      const expected = before.slice();
      for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) expected[(y + r) * W + x + c] |= block[r * w + c];
      expect(Array.from(unpackMask(plane)), `case ${t}: ${w}x${h}+${x}+${y} in ${W}x${H}`).toEqual(Array.from(expected));
      expect(countSet(plane)).toBe(expected.reduce((a, v) => a + v, 0));
    }
  });

  test('the classes raster from bit planes equals the per-pixel classify, on clear, uniform and mixed words', () => {
    const W = 101;
    const H = 7;
    let seed = 3;
    const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    // Per row a different mix: all clear, all nodata, all cloud, all buffer, then random ones.
    const plane = (kind: number, row: number): number => (row === 0 ? 0 : row === 1 ? (kind === 0 ? 1 : 0) : row === 2 ? (kind === 1 ? 1 : 0) : row === 3 ? (kind === 4 ? 1 : 0) : rand(4) === 0 ? 1 : 0);
    const rasters = [0, 1, 2, 3, 4].map((kind) => Uint8Array.from({ length: W * H }, (_, i) => plane(kind, Math.floor(i / W))));
    const [nodata, cloud, shadow, product, merged] = rasters;
    const s = new Stitcher(W, H, 1, false);
    s.orRaster('nodata', nodata);
    s.orRaster('cloud', cloud);
    s.orRaster('shadow', shadow);
    s.orRaster('product', product);
    const expected = classify(flagsOf(s), merged);
    expect(Array.from(classesOf(s, packMask(merged, W, H)))).toEqual(Array.from(expected));
    expect(new Set(expected)).toEqual(new Set([0, 1, 2, 3, 4, 5]));
  });

  test('the stitcher ignores duplicates and knows when it is complete', () => {
    const s = new Stitcher(4, 2, 2, false);
    const res = (i: number): TileResult => ({ type: 'tile-result', v: 1, runKey: 'k', chipIndex: i, worker: 'w', write: { x: i * 2, y: 0, width: 2, height: 2 }, cloud: packBits([1, 0, 0, 1]), shadow: packBits([0, 0, 0, 0]), nodata: packBits([0, 0, 0, 0]), skipped: false, timings: { readMs: 0, inferenceMs: 0, cloudMs: 0, shadowMs: 0, thresholdMs: 0, modelLoadMs: 0 } });
    expect(s.add(res(0))).toBe(true);
    expect(s.add(res(0))).toBe(false);
    expect(s.complete).toBe(false);
    expect(s.add(res(1))).toBe(true);
    expect(s.complete).toBe(true);
    expect(Array.from(flagsOf(s))).toEqual([1, 0, 1, 0, 0, 1, 0, 1]);
  });
});

describe('flow gate', () => {
  test('multi-slot acquisition waits for all slots together', async () => {
    const g = new FlowGate(4);
    await g.acquire(3);
    let got = false;
    const p = g.acquire(2).then(() => (got = true));
    await new Promise((r) => setImmediate(r));
    expect(got).toBe(false);
    g.release(1);
    await p;
    expect(got).toBe(true);
    expect(g.inUse).toBe(4);
    await expect(g.acquire(5)).rejects.toThrow(/cannot take 5/);
  });
});

describe('parameters and archive manifests', () => {
  test('nulls take the defaults and bad values name the field', () => {
    expect(resolveParams({ cloud_thr: null, shadow_thr: '0.5' })).toEqual({ ...DEFAULT_PARAMS, shadow_thr: 0.5 });
    expect(() => resolveParams({ cloud_thr: 1.5 })).toThrow(/parameter cloud_thr must be a number in \[0, 1\]/);
    expect(() => resolveParams({ min_area: -1 })).toThrow(/min_area/);
    expect(() => resolveParams({ closing_size: 3 })).toThrow(/closing_size is unknown/);
  });

  test('line and JSON manifests, unique names, clear errors', () => {
    const scenes = parseArchiveManifest('# archive\n/a/T29RKH scl\n/b/T29RKH none\n\nhttps://x/item.json\n');
    expect(scenes.map((s) => [s.name, s.productMask])).toEqual([['T29RKH', 'scl'], ['T29RKH-2', 'none'], ['item', 'scl']]);
    expect(parseArchiveManifest('[{"input": "/s.tif", "product_mask": "/m.tif"}]')).toEqual([{ input: '/s.tif', productMask: '/m.tif', name: 's' }]);
    expect(() => parseArchiveManifest('a b c')).toThrow(/manifest:1: expected "INPUT \[PRODUCT_MASK\]"/);
    expect(() => parseArchiveManifest('# nothing\n')).toThrow(/lists no scenes/);
  });
});

describe('job grouping', () => {
  const groups = (done: Set<number>, perJob: number, w = 1098, tail = 0): number[][] => {
    const layout = sceneLayout(w, 1098);
    const out: number[][] = [];
    for (let i = 0; i < layout.count; ) {
      const g = nextGroup(layout, (k) => done.has(k), i, perJob, tail);
      i = g.next;
      if (g.chips.length) out.push(g.chips.map((c) => c.index));
    }
    return out;
  };
  test('consecutive chips of one row, never across rows, rows alternately left to right and right to left', () => {
    expect(groups(new Set(), 4)).toEqual([[0, 1, 2], [5, 4, 3], [6, 7, 8]]);
    expect(groups(new Set(), 2)).toEqual([[0, 1], [2], [5, 4], [3], [6, 7], [8]]);
    expect(groups(new Set(), 4, 2196)).toEqual([[0, 1, 2, 3], [4, 5], [11, 10, 9, 8], [7, 6], [12, 13, 14, 15], [16, 17]]);
    const layout = sceneLayout(10980, 10980);
    const order = Array.from({ length: layout.count }, (_, p) => chipAtPosition(layout, p));
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: layout.count }, (_, i) => i));
  });
  test("the scene's last chips go one per job", () => {
    expect(groups(new Set(), 4, 2196, 7)).toEqual([[0, 1, 2, 3], [4, 5], [11, 10, 9, 8], [7], [6], [12], [13], [14], [15], [16], [17]]);
    expect(groups(new Set([12]), 4, 2196, 3)).toEqual([[0, 1, 2, 3], [4, 5], [11, 10, 9, 8], [7, 6], [13, 14], [15], [16], [17]]);
  });
  test('chips already stitched are skipped and split groups (resume)', () => {
    expect(groups(new Set([1, 3, 4, 5, 8]), 4)).toEqual([[0], [2], [6, 7]]);
  });
});
