import { existsSync, readdirSync } from 'node:fs';
import { fromFile } from 'geotiff';
import { beforeAll, describe, expect, test } from 'vitest';
import { dilateDisk, mergeMask, removeSmallComponents } from '../coordinator/merge/index.ts';
import { DiskDilation, diskHalfWidths } from '../coordinator/merge/dilate.ts';
import { classesOf, Stitcher } from '../coordinator/stitch.ts';
import type { TileResult } from '../shared/messages.ts';
import { packBits } from '../shared/bitpack.ts';
import { emptyPacked, orBitsInto, packMask, unpackMask } from '../shared/packed-mask.ts';
import { planChips, sceneLayout } from '../shared/tiling.ts';
import { dilateByRowsReference, dilateReference, diskOffsets, removeSmallReference, type Window } from '../coordinator/merge/reference.ts';
import { CloudMaskError } from '../shared/errors.ts';

/** Deterministic pseudo-random generator (LCG), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
}

/** Random mask with the given density; set pixels get values 1..255 to check "nonzero = set". */
function randomMask(width: number, height: number, density: number, seed: number): Uint8Array {
  const next = rng(seed);
  const mask = new Uint8Array(width * height);
  for (let i = 0; i < mask.length; i++) if (next() < density) mask[i] = 1 + Math.floor(next() * 255);
  return mask;
}

/** Index of the first differing pixel as "x,y", or null: a readable failure on huge arrays. */
function firstDifference(a: Uint8Array, b: Uint8Array, width: number): string | null {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `${i % width},${Math.floor(i / width)}: ${a[i]} vs ${b[i]}`;
  return null;
}

function count(mask: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i];
  return n;
}

/** Mask from rows of '#' (set) and '.' (clear). */
function fromRows(rows: string[]): { mask: Uint8Array; width: number; height: number } {
  const width = rows[0].length;
  const mask = new Uint8Array(width * rows.length);
  rows.forEach((row, y) => [...row].forEach((c, x) => (mask[y * width + x] = c === '#' ? 1 : 0)));
  return { mask, width, height: rows.length };
}

function toRows(mask: Uint8Array, width: number): string[] {
  const rows: string[] = [];
  for (let i = 0; i < mask.length; i += width) rows.push([...mask.subarray(i, i + width)].map((v) => (v ? '#' : '.')).join(''));
  return rows;
}

describe('dilateDisk', () => {
  test('the r=5 footprint has 81 pixels with row widths 1,7,9,9,9,11,9,9,9,7,1', () => {
    expect(diskHalfWidths(5)).toEqual([0, 3, 4, 4, 4, 5, 4, 4, 4, 3, 0]);
    expect(diskOffsets(5).length).toBe(81);
    const mask = new Uint8Array(21 * 21);
    mask[10 * 21 + 10] = 1;
    const out = dilateDisk(mask, 21, 21);
    expect(count(out)).toBe(81);
    const widths = toRows(out, 21).map((r) => r.split('#').length - 1).filter((n) => n > 0);
    expect(widths).toEqual([1, 7, 9, 9, 9, 11, 9, 9, 9, 7, 1]);
    for (let y = 0; y < 21; y++) {
      for (let x = 0; x < 21; x++) expect(out[y * 21 + x]).toBe((y - 10) ** 2 + (x - 10) ** 2 <= 25 ? 1 : 0);
    }
  });

  test('a pixel in each corner keeps only the quarter disk inside the image (26 pixels, no wrap)', () => {
    const [w, h] = [37, 23];
    for (const [x, y] of [[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]) {
      const mask = new Uint8Array(w * h);
      mask[y * w + x] = 1;
      const out = dilateDisk(mask, w, h);
      expect(count(out)).toBe(26);
      expect(firstDifference(out, dilateReference(mask, w, h, 5), w)).toBeNull();
    }
  });

  test('empty stays empty and full stays full', () => {
    for (const [w, h] of [[1, 1], [33, 7], [64, 64], [1000, 3]]) {
      expect(count(dilateDisk(new Uint8Array(w * h), w, h))).toBe(0);
      expect(count(dilateDisk(new Uint8Array(w * h).fill(7), w, h))).toBe(w * h);
    }
    expect(dilateDisk(new Uint8Array(0), 0, 0).length).toBe(0);
  });

  test('1xN and Nx1 images dilate along their one axis only', () => {
    const column = new Uint8Array(50);
    column[20] = 1;
    const vertical = dilateDisk(column, 1, 50);
    expect([...vertical].map((v, y) => (v ? y : -1)).filter((y) => y >= 0)).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    const horizontal = dilateDisk(column, 50, 1);
    expect([...horizontal].map((v, x) => (v ? x : -1)).filter((x) => x >= 0)).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    for (const [w, h] of [[1, 97], [97, 1], [1, 3], [2, 1]]) {
      const mask = randomMask(w, h, 0.05, w * 131 + h);
      expect(firstDifference(dilateDisk(mask, w, h), dilateReference(mask, w, h, 5), w)).toBeNull();
    }
  });

  test('radius 0 binarizes and radius 1 is the plus sign', () => {
    const mask = randomMask(45, 9, 0.2, 3);
    expect([...dilateDisk(mask, 45, 9, 0)]).toEqual([...mask].map((v) => (v ? 1 : 0)));
    const one = fromRows(['.....', '.....', '..#..', '.....', '.....']);
    expect(toRows(dilateDisk(one.mask, 5, 5, 1), 5)).toEqual(['.....', '..#..', '.###.', '..#..', '.....']);
  });

  test.each([31, 32, 33, 63, 64, 65, 100, 1000])('width %i matches the per-pixel reference for radii 0, 1, 2, 5, 12, 40', (w) => {
    const h = w === 1000 ? 24 : 41;
    for (const [i, density] of [0.002, 0.02, 0.3].entries()) {
      const mask = randomMask(w, h, density, w * 7 + i);
      for (const r of [0, 1, 2, 5, 12, 40]) {
        expect(firstDifference(dilateDisk(mask, w, h, r), dilateReference(mask, w, h, r), w), `r=${r} density=${density}`).toBeNull();
      }
    }
  });

  test('an input that does not start on a 4-byte boundary gives the same result', () => {
    const mask = randomMask(64, 30, 0.01, 11);
    const shifted = new Uint8Array(mask.length + 1).subarray(1);
    shifted.set(mask);
    expect(firstDifference(dilateDisk(shifted, 64, 30), dilateDisk(mask, 64, 30), 64)).toBeNull();
  });

  test('leaves its input alone and rejects bad arguments', () => {
    const mask = randomMask(40, 40, 0.01, 5);
    const before = mask.slice();
    dilateDisk(mask, 40, 40);
    expect(mask).toEqual(before);
    expect(() => dilateDisk(mask, 40, 41)).toThrow(CloudMaskError);
    expect(() => dilateDisk(mask, 40, 40, -1)).toThrow(/radius/);
    expect(() => dilateDisk(mask, 40, 40, 1.5)).toThrow(/radius/);
  });
});

describe('dilation as rows come (DiskDilation, Stitcher.dilateAsChipsCome)', () => {
  test('fed in uneven steps, the OR of several planes dilates as the whole does', () => {
    for (const [w, h] of [[70, 53], [33, 4], [1, 40], [96, 12]]) {
      const planes = [0.004, 0.01, 0.03].map((d, i) => packMask(randomMask(w, h, d, w * 31 + h * 7 + i), w, h));
      const or = new Uint8Array(w * h);
      for (const p of planes) unpackMask(p).forEach((v, i) => (or[i] |= v));
      for (const r of [0, 1, 2, 5, 7]) {
        const next = rng(w * 1000 + r);
        const d = new DiskDilation(w, h, r);
        for (let upTo = 0; upTo < h; upTo += Math.floor(next() * 9)) d.feed(planes, upTo);
        expect(d.rowsIn).toBeLessThanOrEqual(h);
        expect(firstDifference(unpackMask(d.finish(planes)), dilateReference(or, w, h, r), w), `${w}x${h} r=${r}`).toBeNull();
        expect(firstDifference(unpackMask(d.finish(planes)), dilateReference(or, w, h, r), w), 'finish twice').toBeNull();
      }
    }
    expect(() => new DiskDilation(4, 4, -1)).toThrow(/radius/);
    expect(() => new DiskDilation(4, 4, 1).feed([emptyPacked(4, 5)], 2)).toThrow(/4x4/);
  });

  test('a stitcher dilating as chips come, in any order, with the product mask first, gives the whole-scene dilation', () => {
    // FarmVibes' own layout of a 1300 x 900 scene (12 chips), real chip write windows.
    const [W, H] = [1300, 900];
    const chips = planChips(sceneLayout(W, H));
    const cloud = randomMask(W, H, 0.002, 1);
    const shadow = randomMask(W, H, 0.001, 2);
    const product = randomMask(W, H, 0.0005, 3);
    const crop = (m: Uint8Array, c: { x: number; y: number; width: number; height: number }): Uint8Array => {
      const out = new Uint8Array(c.width * c.height);
      for (let r = 0; r < c.height; r++) out.set(m.subarray((c.y + r) * W + c.x, (c.y + r) * W + c.x + c.width), r * c.width);
      return packBits(out);
    };
    const result = (i: number): TileResult => {
      const write = chips[i]!.write;
      const none = packBits(new Uint8Array(write.width * write.height));
      return { type: 'tile-result', v: 1, runKey: 'k', chipIndex: i, worker: 'w', write, cloud: crop(cloud, write), shadow: crop(shadow, write), nodata: none, skipped: false, timings: { readMs: 0, inferenceMs: 0, cloudMs: 0, shadowMs: 0, thresholdMs: 0, modelLoadMs: 0 } };
    };
    const expected = dilateReference(cloud.map((v, i) => v | shadow[i]! | product[i]!), W, H, 5);
    const next = rng(9);
    for (const order of ['in order', 'shuffled', 'reversed']) {
      const indexes = chips.map((_, i) => i);
      if (order === 'shuffled') indexes.sort(() => next() - 0.5);
      if (order === 'reversed') indexes.reverse();
      const s = new Stitcher(W, H, chips.length, false);
      // Some chips before the product mask (a replay, a fast worker), the rest after.
      for (const i of indexes.slice(0, 3)) s.add(result(i));
      s.addProductMask(packMask(product, W, H));
      s.dilateAsChipsCome(5);
      for (const i of indexes.slice(3)) {
        expect(s.dilated).toBeNull();
        s.add(result(i));
      }
      expect(s.dilated?.radius).toBe(5);
      expect(firstDifference(unpackMask(s.dilated!.mask), expected, W), order).toBeNull();
    }
  });

  test('a whole-plane change after the dilation started drops it (the outputs then dilate the whole)', () => {
    const s = new Stitcher(40, 10, 1, false);
    s.dilateAsChipsCome(5);
    const p = emptyPacked(40, 10);
    orBitsInto(p, packBits(new Uint8Array(400).fill(1)), 40, 10, 0, 0);
    s.addProductMask(p);
    s.add({ type: 'tile-result', v: 1, runKey: 'k', chipIndex: 0, worker: 'w', write: { x: 0, y: 0, width: 40, height: 10 }, cloud: packBits(new Uint8Array(400)), shadow: packBits(new Uint8Array(400)), nodata: packBits(new Uint8Array(400)), skipped: false, timings: { readMs: 0, inferenceMs: 0, cloudMs: 0, shadowMs: 0, thresholdMs: 0, modelLoadMs: 0 } });
    expect(s.complete).toBe(true);
    expect(s.dilated).toBeNull();
    expect(classesOf(s, p).every((v) => v === 3)).toBe(true);
  });
});

describe('removeSmallComponents', () => {
  test('diagonal neighbours join objects (8-connectivity)', () => {
    const { mask, width, height } = fromRows(['#....', '.#...', '.....', '...#.', '.....']);
    expect(toRows(removeSmallComponents(mask, width, height, 2), width)).toEqual(['#....', '.#...', '.....', '.....', '.....']);
  });

  test('diagonal neighbours join holes (8-connectivity)', () => {
    const { mask, width, height } = fromRows(['#####', '#.###', '##.##', '#####', '#####']);
    expect(removeSmallComponents(mask, width, height, 2)).toEqual(mask);
    expect(count(removeSmallComponents(mask, width, height, 3))).toBe(25);
  });

  test('a small clear region touching the border is a hole and gets filled', () => {
    const { mask, width, height } = fromRows(['##.##', '#####', '#####', '#####', '.####']);
    expect(count(removeSmallComponents(mask, width, height, 2))).toBe(25);
    const big = fromRows(['.....', '.....', '..#..', '.....', '.....']);
    // The background (24 pixels) is not small; the lone object is.
    expect(count(removeSmallComponents(big.mask, 5, 5, 2))).toBe(0);
    // minArea 26: the lone object goes, then the whole 25-pixel clear image is a small hole.
    expect(count(removeSmallComponents(big.mask, 5, 5, 25))).toBe(0);
    expect(count(removeSmallComponents(big.mask, 5, 5, 26))).toBe(25);
  });

  test('a component of exactly minArea pixels is kept, one pixel fewer is removed', () => {
    const { mask, width, height } = fromRows(['###....', '.......', '....##.', '.......']);
    expect(toRows(removeSmallComponents(mask, width, height, 3), width)).toEqual(['###....', '.......', '.......', '.......']);
    const holes = fromRows(['#######', '#...###', '#####.#', '#######']);
    expect(toRows(removeSmallComponents(holes.mask, 7, 4, 3), 7)).toEqual(['#######', '#...###', '#######', '#######']);
  });

  test('objects are removed before holes are filled, as skimage does', () => {
    // A one-pixel island inside an 8-pixel hole: removing it first makes a 9-pixel hole.
    const { mask, width, height } = fromRows(['#####', '#...#', '#.#.#', '#...#', '#####']);
    expect(toRows(removeSmallComponents(mask, width, height, 9), width)).toEqual(['#####', '#...#', '#...#', '#...#', '#####']);
    expect(count(removeSmallComponents(mask, width, height, 10))).toBe(25);
  });

  test('minArea <= 0 returns an unchanged copy', () => {
    const mask = randomMask(20, 20, 0.3, 9);
    for (const minArea of [0, -5]) {
      const out = removeSmallComponents(mask, 20, 20, minArea);
      expect(out).toEqual(mask);
      expect(out).not.toBe(mask);
    }
  });

  test('empty and full masks', () => {
    expect(count(removeSmallComponents(new Uint8Array(64), 8, 8, 10))).toBe(0);
    expect(count(removeSmallComponents(new Uint8Array(64).fill(1), 8, 8, 10))).toBe(64);
    expect(count(removeSmallComponents(new Uint8Array(64), 8, 8, 65))).toBe(64);
    // A full image smaller than minArea is removed as an object, then filled as a hole.
    expect(count(removeSmallComponents(new Uint8Array(64).fill(1), 8, 8, 65))).toBe(64);
  });

  test.each([1, 31, 32, 33, 63, 65, 200])('width %i matches the flood-fill reference', (w) => {
    for (const [i, density] of [0.1, 0.45, 0.6, 0.9].entries()) {
      const h = w === 1 ? 300 : 37;
      const mask = randomMask(w, h, density, w * 13 + i);
      for (const minArea of [1, 2, 5, 30]) {
        const fast = removeSmallComponents(mask, w, h, minArea);
        expect(firstDifference(fast, removeSmallReference(mask, w, h, minArea), w), `density=${density} minArea=${minArea}`).toBeNull();
      }
    }
  });
});

describe('mergeMask', () => {
  test('dilates by 5 by default and then removes small parts', () => {
    const mask = randomMask(70, 50, 0.003, 21);
    expect(mergeMask(mask, 70, 50)).toEqual(dilateReference(mask, 70, 50, 5));
    const expected = removeSmallReference(dilateReference(mask, 70, 50, 2), 70, 50, 40);
    expect(mergeMask(mask, 70, 50, { closingSize: 2, minArea: 40 })).toEqual(expected);
  });

  test('names the bad option', () => {
    const mask = new Uint8Array(4);
    expect(() => mergeMask(mask, 2, 2, { closingSize: -1 })).toThrow(/options\.closingSize/);
    expect(() => mergeMask(mask, 2, 2, { minArea: Number.NaN })).toThrow(/options\.minArea/);
    expect(() => mergeMask(mask, 3, 2)).toThrow(CloudMaskError);
  });
});

const MASK_DIR = new URL('../../shared/data/mask-T19GBQ-omnicloudmask/', import.meta.url);

describe.skipIf(!existsSync(MASK_DIR))('full-size real mask (T19GBQ, 10980 x 10980)', () => {
  let mask: Uint8Array;
  let size: number;
  let dilated: Uint8Array;

  beforeAll(async () => {
    const name = readdirSync(MASK_DIR).find((f) => f.endsWith('.tif'))!;
    const image = await (await fromFile(new URL(name, MASK_DIR).pathname)).getImage();
    size = image.getWidth();
    expect(image.getHeight()).toBe(size);
    mask = (await image.readRasters({ samples: [0] }))[0] as Uint8Array;
    dilated = dilateDisk(mask, size, size);
  });

  test('the full-size dilation equals the independent row-by-row dilation', () => {
    expect(firstDifference(dilated, dilateByRowsReference(mask, size, size, 5), size)).toBeNull();
  });

  test('the full-size dilation equals the per-pixel reference on corner and edge windows', () => {
    const s = 2048;
    const windows: Window[] = [
      { x0: size - s, y0: 0, w: s, h: s },
      { x0: 0, y0: size - s, w: s, h: s },
      { x0: size - s, y0: size - s, w: s, h: s },
      { x0: size - s, y0: 4466, w: s, h: s },
    ];
    for (const win of windows) {
      const expected = dilateReference(mask, size, size, 5, win);
      const actual = new Uint8Array(s * s);
      for (let y = 0; y < s; y++) actual.set(dilated.subarray((win.y0 + y) * size + win.x0, (win.y0 + y) * size + win.x0 + s), y * s);
      expect(count(expected)).toBeGreaterThan(0);
      expect(firstDifference(actual, expected, s), JSON.stringify(win)).toBeNull();
    }
  });

  test('component removal equals the flood-fill reference on crops', () => {
    const s = 2048;
    for (const [x0, y0] of [[size - s, 0], [0, size - s], [size - s, 4466]]) {
      const crop = new Uint8Array(s * s);
      for (let y = 0; y < s; y++) crop.set(mask.subarray((y0 + y) * size + x0, (y0 + y) * size + x0 + s), y * s);
      for (const minArea of [10, 100]) {
        const fast = removeSmallComponents(crop, s, s, minArea);
        expect(firstDifference(fast, removeSmallReference(crop, s, s, minArea), s), `${x0},${y0} minArea=${minArea}`).toBeNull();
      }
    }
  });

  test('the full merge with minArea 500 equals dilation then flood-fill removal', () => {
    const fast = mergeMask(mask, size, size, { closingSize: 5, minArea: 500 });
    const expected = removeSmallReference(dilated, size, size, 500);
    let changed = 0;
    for (let i = 0; i < fast.length; i++) changed += fast[i] !== dilated[i] ? 1 : 0;
    expect(changed).toBeGreaterThan(10_000);
    expect(firstDifference(fast, expected, size)).toBeNull();
  });
});
