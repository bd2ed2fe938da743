/** Lanes (shared/lanes.ts): which lane a job goes to, who owns it, which lane a worker takes. */
import { describe, expect, it } from 'vitest';
import { nextGroup } from '../coordinator/dispatch.ts';
import { formatLanes, laneOf, ownedLanes, pickLane } from '../shared/lanes.ts';
import { JOB_LANES, names } from '../shared/subjects.ts';
import { sceneLayout } from '../shared/tiling.ts';

/** The lane of every job of a scene, as the coordinator publishes them. */
function jobLanes(size: number, perJob: number): number[][] {
  const layout = sceneLayout(size, size);
  const rows: number[][] = layout.rows.map(() => []);
  for (let p = 0; p < layout.count; ) {
    const g = nextGroup(layout, () => false, p, perJob);
    p = g.next;
    rows[g.chips[0]!.row]!.push(laneOf(layout.cols.length, g.chips.map((c) => c.col)));
  }
  return rows;
}

describe('laneOf', () => {
  it('gives the jobs of a row lanes from left to right, the same in every row (rows run back and forth)', () => {
    const rows = jobLanes(4392, 3);
    expect(rows[0]).toEqual([1, 3, 5, 7]);
    expect(rows[1]).toEqual([7, 5, 3, 1]);
    for (const r of rows) expect([...r].sort()).toEqual([1, 3, 5, 7]);
  });

  it('spreads a full tile\'s 8 jobs a row over the lanes, half of its chips each side of lane 4', () => {
    const layout = sceneLayout(10980, 10980);
    const [row] = jobLanes(10980, 4);
    expect(row).toEqual([0, 1, 2, 3, 4, 6, 7, 7]);
    const left = row!.filter((l) => l < JOB_LANES / 2).length * 4;
    expect(left).toBe(16);
    expect(layout.cols.length - left).toBe(13);
  });

  it('puts a scene of one chip column in lane 0..7 by its middle, never outside', () => {
    expect(laneOf(1, [0])).toBe(4);
    expect(laneOf(29, [28])).toBe(7);
    expect(laneOf(29, [0])).toBe(0);
    expect(() => laneOf(0, [0])).toThrow(/sceneCols/);
    expect(() => laneOf(3, [])).toThrow(/at least one chip/);
  });
});

describe('ownedLanes', () => {
  it('gives every lane exactly one owner, in contiguous runs, while workers <= lanes', () => {
    for (let n = 1; n <= JOB_LANES; n++) {
      const all = Array.from({ length: n }, (_, i) => ownedLanes(i, n)).flat();
      expect(all).toEqual(Array.from({ length: JOB_LANES }, (_, l) => l));
      for (let i = 0; i < n; i++) {
        const mine = ownedLanes(i, n);
        expect(mine.length).toBeGreaterThan(0);
        expect(mine[mine.length - 1]! - mine[0]!).toBe(mine.length - 1);
      }
    }
    expect(ownedLanes(0, 2)).toEqual([0, 1, 2, 3]);
    expect(ownedLanes(1, 2)).toEqual([4, 5, 6, 7]);
  });

  it('shares lanes evenly with more workers than lanes: 50 workers, 6 or 7 per lane', () => {
    const per = new Array<number>(JOB_LANES).fill(0);
    for (let i = 0; i < 50; i++) {
      const mine = ownedLanes(i, 50);
      expect(mine).toHaveLength(1);
      per[mine[0]!]!++;
    }
    expect(Math.min(...per)).toBeGreaterThanOrEqual(6);
    expect(Math.max(...per)).toBeLessThanOrEqual(7);
  });

  it('refuses an index outside the members', () => {
    expect(() => ownedLanes(2, 2)).toThrow(/0\.\.1/);
  });
});

describe('pickLane', () => {
  const pending = (m: Record<number, number>): number[] => Array.from({ length: JOB_LANES }, (_, l) => m[l] ?? 0);

  it('takes an owned lane first, the one with most waiting', () => {
    expect(pickLane([0, 1, 2, 3], pending({ 1: 2, 3: 5, 6: 9 }), true)).toBe(3);
  });

  it('takes another lane only when a thread would idle, the nearest to its own', () => {
    expect(pickLane([0, 1, 2, 3], pending({ 5: 1, 7: 9 }), false)).toBeNull();
    expect(pickLane([0, 1, 2, 3], pending({ 5: 1, 7: 9 }), true)).toBe(5);
    expect(pickLane([4, 5, 6, 7], pending({ 0: 4, 3: 1 }), true)).toBe(3);
    // Equally near: the one with more waiting.
    expect(pickLane([4], pending({ 3: 1, 5: 2 }), true)).toBe(5);
  });

  it('returns null when nothing waits anywhere', () => {
    expect(pickLane([0], pending({}), true)).toBeNull();
  });
});

describe('lane names', () => {
  it('gives each lane its own subject, filter and consumer; subjects fall under the lane\'s filter only', () => {
    const n = names('icm');
    expect(n.jobSubject('run1', 7, 3)).toBe('icm.jobs.3.run1.7');
    expect(n.laneFilter(3)).toBe('icm.jobs.3.>');
    expect(n.laneConsumer(3)).toBe('icm-workers-3');
    expect(n.jobSubject('run1', 7)).toBe('icm.jobs.0.run1.7');
    expect(() => n.jobSubject('run1', 7, JOB_LANES)).toThrow(/lane/);
  });

  it('writes runs of lanes compactly for the log', () => {
    expect(formatLanes([0, 1, 2, 3])).toBe('0-3');
    expect(formatLanes([5])).toBe('5');
    expect(formatLanes([1, 4])).toBe('1,4');
  });
});
