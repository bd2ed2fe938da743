import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { axisLayout, chipAt, planChips, roundHalfEven, sceneLayout } from '../shared/tiling.ts';

interface Case {
  dim: number;
  chips: number;
  read_start: number[];
  write_start: number[];
  write_end: number[];
  chip_slice_start: number[];
  chip_slice_end: number[];
}
const vectors = JSON.parse(readFileSync(new URL('../../shared/spec/chip-layout-vectors.json', import.meta.url), 'utf8')) as { cases: Case[] };

describe('chip layout (FarmVibes-exact)', () => {
  test.each(vectors.cases.map((c) => [c.dim, c] as const))('dim %i matches the numpy vectors', (_dim, c) => {
    const axis = axisLayout(c.dim);
    expect(axis.length).toBe(c.chips);
    expect(axis.map((a) => a.readStart)).toEqual(c.read_start);
    expect(axis.map((a) => a.writeStart)).toEqual(c.write_start);
    expect(axis.map((a) => a.writeEnd)).toEqual(c.write_end);
    expect(axis.map((a) => a.sliceStart)).toEqual(c.chip_slice_start);
    expect(axis.map((a) => a.sliceEnd)).toEqual(c.chip_slice_end);
  });

  test('10980 gives the 29 starts of the spec and 841 chips', () => {
    const starts = axisLayout(10980).map((a) => a.readStart);
    expect(starts.length).toBe(29);
    expect(starts.slice(0, 5)).toEqual([0, 374, 748, 1122, 1495]);
    expect(starts.slice(-2)).toEqual([10094, 10468]);
    expect(sceneLayout(10980, 10980).count).toBe(841);
  });

  test('spec examples: 1000 and 513', () => {
    const a = axisLayout(1000);
    expect(a.map((c) => c.readStart)).toEqual([0, 244, 488]);
    expect(a.map((c) => [c.writeStart, c.writeEnd])).toEqual([[0, 378], [378, 622], [622, 1000]]);
    const b = axisLayout(513);
    expect(b.map((c) => [c.writeStart, c.writeEnd])).toEqual([[0, 256], [256, 513]]);
  });

  test('round half to even, as numpy', () => {
    expect([0.5, 1.5, 2.5, -0.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, 2, 3]);
  });

  test('write windows partition the scene exactly once, row-major', () => {
    for (const [w, h] of [[1098, 1098], [1000, 600], [513, 2196], [300, 200]]) {
      const layout = sceneLayout(w, h);
      const hits = new Uint8Array(w * h);
      const chips = planChips(layout);
      chips.forEach((c, i) => {
        expect(c.index).toBe(i);
        expect(c.read.width).toBe(512);
        expect(c.write.x).toBeGreaterThanOrEqual(c.read.x);
        expect(c.write.x + c.write.width).toBeLessThanOrEqual(c.read.x + 512);
        for (let y = c.write.y; y < c.write.y + c.write.height; y++) for (let x = c.write.x; x < c.write.x + c.write.width; x++) hits[y * w + x]++;
      });
      expect(hits.every((v) => v === 1)).toBe(true);
      if (chips.length > 1) expect(chips[1].col).toBe(1);
    }
  });

  test('a scene smaller than a chip is one padded chip', () => {
    const layout = sceneLayout(300, 200);
    expect(layout.count).toBe(1);
    expect(chipAt(layout, 0)).toMatchObject({ read: { x: 0, y: 0, width: 512, height: 512 }, write: { x: 0, y: 0, width: 300, height: 200 } });
  });

  test('the 1098 sample scene has 9 chips', () => {
    expect(sceneLayout(1098, 1098).count).toBe(9);
    expect(() => chipAt(sceneLayout(1098, 1098), 9)).toThrow(/outside/);
  });
});
