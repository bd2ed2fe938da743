import { describe, expect, test } from 'vitest';
import { bilinearSourceRange, nearestSourceRange, resampleBilinear, resampleNearest, resampleNearestPacked, type SourceBlock } from '../raster/resample.ts';
import { emptyPacked, unpackMask } from '../shared/packed-mask.ts';
import type { Window } from '../raster/types.ts';

/** A deterministic pseudo-random uint16 image with some nodata (0) pixels. */
function image(w: number, h: number, seed: number, zeros = 0.05): Uint16Array {
  const a = new Uint16Array(w * h);
  let s = seed >>> 0;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 < zeros ? 0 : 1 + (s % 9000);
  }
  return a;
}

const whole = (data: Uint16Array, w: number, h: number): SourceBlock => ({ data, x: 0, y: 0, width: w, height: h });

/** The block of `src` (w x h) that bilinear needs for `win` at `ratio`. */
function blockFor(src: Uint16Array, w: number, h: number, ratio: number, win: Window): SourceBlock {
  const [x0, x1] = bilinearSourceRange(win.x, win.width, ratio, w);
  const [y0, y1] = bilinearSourceRange(win.y, win.height, ratio, h);
  const data = new Uint16Array(Math.max(0, x1 - x0) * Math.max(0, y1 - y0));
  for (let y = y0; y < y1; y++) data.set(src.subarray(y * w + x0, y * w + x1), (y - y0) * (x1 - x0));
  return { data, x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

function crop(a: Uint16Array, aw: number, win: Window, at: { x: number; y: number }): Uint16Array {
  const out = new Uint16Array(win.width * win.height);
  for (let j = 0; j < win.height; j++) {
    const s = (win.y - at.y + j) * aw + (win.x - at.x);
    out.set(a.subarray(s, s + win.width), j * win.width);
  }
  return out;
}

describe('bilinear resampling', () => {
  test('ratio 1 is the identity', () => {
    const src = image(37, 23, 1);
    const out = resampleBilinear(whole(src, 37, 23), 37, 23, 1, { x: 0, y: 0, width: 37, height: 23 });
    expect(Array.from(out)).toEqual(Array.from(src));
  });

  for (const ratio of [2, 6]) {
    test(`window-invariant at ratio ${ratio}: any window equals the crop of the whole image`, () => {
      const sw = 41;
      const sh = 29;
      const src = image(sw, sh, ratio);
      const full = { x: 0, y: 0, width: sw * ratio, height: sh * ratio };
      const all = resampleBilinear(whole(src, sw, sh), sw, sh, ratio, full);
      const windows: Window[] = [
        { x: 0, y: 0, width: 17, height: 13 },
        { x: 5, y: 7, width: 64, height: 33 },
        { x: sw * ratio - 19, y: sh * ratio - 11, width: 19, height: 11 },
        { x: 1, y: 1, width: 1, height: 1 },
        { x: 3 * ratio - 1, y: 2 * ratio + 1, width: 2 * ratio + 3, height: ratio + 2 },
      ];
      for (const win of windows) {
        const part = resampleBilinear(blockFor(src, sw, sh, ratio, win), sw, sh, ratio, win);
        expect(Array.from(part), JSON.stringify(win)).toEqual(Array.from(crop(all, full.width, win, full)));
      }
    });
  }

  test('a sub-window of a window equals its crop, and pixels past the footprint are 0', () => {
    const src = image(20, 20, 7);
    const a: Window = { x: -5, y: -3, width: 50, height: 48 }; // runs past every edge of 40x40
    const outA = resampleBilinear(blockFor(src, 20, 20, 2, a), 20, 20, 2, a);
    const b: Window = { x: 30, y: 33, width: 15, height: 12 };
    const outB = resampleBilinear(blockFor(src, 20, 20, 2, b), 20, 20, 2, b);
    expect(Array.from(outB)).toEqual(Array.from(crop(outA, a.width, b, a)));
    for (let j = 0; j < a.height; j++) {
      for (let i = 0; i < a.width; i++) {
        const inside = a.x + i >= 0 && a.x + i < 40 && a.y + j >= 0 && a.y + j < 40;
        if (!inside) expect(outA[j * a.width + i]).toBe(0);
      }
    }
  });

  test('weights follow sx = (x + 0.5) / r - 0.5; edges keep the edge pixel', () => {
    const src = Uint16Array.from([100, 200]);
    const out = resampleBilinear(whole(src, 2, 1), 2, 1, 2, { x: 0, y: 0, width: 4, height: 2 });
    // x=0: only source 0 inside; x=1: 0.75*100+0.25*200; x=2: 0.25*100+0.75*200; x=3: source 1 only.
    expect(Array.from(out)).toEqual([100, 125, 175, 200, 100, 125, 175, 200]);
  });

  test('nodata neighbours are dropped and the weights renormalised; all nodata gives 0', () => {
    const src = Uint16Array.from([0, 400, 0, 0]); // 2x2: only (1,0) valid
    const out = resampleBilinear(whole(src, 2, 2), 2, 2, 2, { x: 0, y: 0, width: 4, height: 4 });
    // Every target pixel with (1,0) among its neighbours with nonzero weight gets exactly 400.
    expect(Array.from(out)).toEqual([0, 400, 400, 400, 0, 400, 400, 400, 0, 400, 400, 400, 0, 0, 0, 0]);
    const none = resampleBilinear(whole(new Uint16Array(4), 2, 2), 2, 2, 2, { x: 0, y: 0, width: 4, height: 4 });
    expect(none.every((v) => v === 0)).toBe(true);
  });

  test('valid results never round down to 0', () => {
    const src = Uint16Array.from([1, 1, 1, 1]);
    const out = resampleBilinear(whole(src, 2, 2), 2, 2, 6, { x: 0, y: 0, width: 12, height: 12 });
    expect(out.every((v) => v === 1)).toBe(true);
  });
});

/**
 * The plain definition, written as simply as possible: per target pixel, the two taps per axis
 * from sx = (x + 0.5) / r - 0.5, taps outside the source or equal to 0 dropped, weights wy * wx
 * accumulated row by row, left to right, result Math.round(sum / wsum) clamped to 1..65535.
 */
function plainBilinear(src: Uint16Array, sw: number, sh: number, ratio: number, win: Window): Uint16Array {
  const out = new Uint16Array(win.width * win.height);
  const taps = (t: number, size: number): [number, number][] => {
    if (t < 0 || t >= size * ratio) return [];
    const s = (t + 0.5) / ratio - 0.5;
    const a = Math.floor(s);
    const f = s - a;
    return ([[a, 1 - f], [a + 1, f]] as [number, number][]).filter(([i, w]) => i >= 0 && i < size && w !== 0);
  };
  for (let j = 0; j < win.height; j++) {
    for (let i = 0; i < win.width; i++) {
      let sum = 0;
      let wsum = 0;
      for (const [y, wy] of taps(win.y + j, sh)) {
        for (const [x, wx] of taps(win.x + i, sw)) {
          const v = src[y * sw + x]!;
          if (v === 0) continue;
          const w = wy * wx;
          sum += w * v;
          wsum += w;
        }
      }
      out[j * win.width + i] = wsum > 0 ? Math.min(65535, Math.max(1, Math.round(sum / wsum))) : 0;
    }
  }
  return out;
}

describe('bilinear fast paths', () => {
  for (const ratio of [2, 3, 6]) {
    for (const zeros of [0, 0.03, 0.4]) {
      test(`ratio ${ratio}, ${zeros * 100} % nodata: bit-identical to the plain definition`, () => {
        const sw = 37;
        const sh = 29;
        // Full uint16 range, so rounding of every kind of fraction is exercised.
        const src = image(sw, sh, ratio * 100 + zeros * 10, zeros).map((v) => (v === 0 ? 0 : 1 + ((v * 7919) % 65535)));
        const windows: Window[] = [
          { x: 0, y: 0, width: sw * ratio, height: sh * ratio },
          { x: -4, y: -3, width: 41, height: 23 },
          { x: 7, y: 5, width: 64, height: 40 },
          { x: sw * ratio - 30, y: sh * ratio - 20, width: 37, height: 26 },
        ];
        for (const win of windows) {
          const fast = resampleBilinear(blockFor(src, sw, sh, ratio, win), sw, sh, ratio, win);
          const plain = plainBilinear(src, sw, sh, ratio, win);
          expect(Buffer.from(fast.buffer).equals(Buffer.from(plain.buffer)), JSON.stringify(win)).toBe(true);
        }
      });
    }
  }

  test('values near 65535 and near 1 clamp as the plain definition does', () => {
    const src = Uint16Array.from([65535, 65534, 1, 65535, 2, 1, 65535, 65535, 65533]);
    for (const ratio of [2, 6]) {
      const win = { x: 0, y: 0, width: 3 * ratio, height: 3 * ratio };
      expect(Array.from(resampleBilinear(whole(src, 3, 3), 3, 3, ratio, win))).toEqual(Array.from(plainBilinear(src, 3, 3, ratio, win)));
    }
  });
});

describe('nearest resampling', () => {
  test('source pixel floor((x + 0.5) / r), 0 outside', () => {
    const src = Uint8Array.from([1, 2, 3, 4, 5, 6]); // 3x2
    const win = { x: -1, y: 0, width: 8, height: 5 };
    const [x0, x1] = nearestSourceRange(win.x, win.width, 2, 3);
    expect([x0, x1]).toEqual([0, 3]);
    const out = resampleNearest({ data: src, x: 0, y: 0, width: 3, height: 2 }, 3, 2, 2, win, new Uint8Array(40));
    expect(Array.from(out.subarray(0, 8))).toEqual([0, 1, 1, 2, 2, 3, 3, 0]);
    expect(Array.from(out.subarray(16, 24))).toEqual([0, 4, 4, 5, 5, 6, 6, 0]);
    expect(Array.from(out.subarray(32, 40))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('nearest resampling into bits', () => {
  test('equals resampleNearest of the whole image, for the ratios of 20 m and 60 m masks and odd sizes', () => {
    let seed = 11;
    const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
    for (const [ratio, sw, sh, w, h] of [[2, 50, 7, 100, 14], [2, 51, 9, 101, 17], [6, 13, 5, 77, 30], [6, 13, 5, 80, 29], [1, 37, 3, 37, 3], [3, 20, 20, 64, 61]] as const) {
      // Clear rows, sparse rows and dense rows: the clear-row shortcut and the bit loop both run.
      const src = Uint8Array.from({ length: sw * sh }, (_, i) => (Math.floor(i / sw) % 3 === 0 ? 0 : rand(Math.floor(i / sw) % 3 === 1 ? 7 : 2) === 0 ? 1 : 0));
      const expected = resampleNearest({ data: src, x: 0, y: 0, width: sw, height: sh }, sw, sh, ratio, { x: 0, y: 0, width: w, height: h }, new Uint8Array(w * h));
      const packed = resampleNearestPacked(src, sw, sh, ratio, w, h);
      expect(Array.from(unpackMask(packed)), `ratio ${ratio}, ${sw}x${sh} -> ${w}x${h}`).toEqual(Array.from(expected));
      // In steps of rows (the product mask is made so), odd steps included: the same bits.
      for (const step of [1, 5, 8]) {
        const into = emptyPacked(w, h);
        for (let y = 0; y < h; y += step) resampleNearestPacked(src, sw, sh, ratio, w, h, { from: y, to: Math.min(h, y + step), into });
        expect(Array.from(unpackMask(into)), `ratio ${ratio}, ${sw}x${sh} -> ${w}x${h} in steps of ${step}`).toEqual(Array.from(expected));
      }
    }
  });
});
