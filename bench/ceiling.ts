/**
 * The ceilings: what the machine can do at best. a1 decodes every source tile of the scene once
 * and brings it to the 10 m grid, on all cores; a2 pushes the scene's whole 512x512 chips through
 * both models (same ORT settings and thread count as the pipeline), data already in memory, as
 * FarmVibes infers them; a2' pushes only each chip's write window, so every output pixel is
 * inferred once. a1 + a2 is the per-chip ceiling, a1 + a2' the true one; efficiency = ceiling /
 * measured.
 */
import path from 'node:path';
import { Piscina } from 'piscina';
import { closeTiff, openTiff } from '../raster/tiff-file.ts';
import { planChips, sceneLayout } from '../shared/tiling.ts';
import type { BenchScene } from './scene.ts';
import type { DecodeReply, DecodeTask, InferReply, InferTask } from './threads.ts';

/** Band files with their ratio to the 10 m grid (SCL is the product mask, read by the coordinator). */
const BANDS: [string, number][] = [
  ['B01', 6], ['B02', 1], ['B03', 1], ['B04', 1], ['B05', 2], ['B06', 2],
  ['B07', 2], ['B08', 1], ['B8A', 2], ['B09', 6], ['B11', 2], ['B12', 2],
];

function pool(threads: number): Piscina {
  return new Piscina({ filename: new URL('./thread-entry.mjs', import.meta.url).href, minThreads: threads, maxThreads: threads, idleTimeout: 60_000 });
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** One task per band and tile row, biggest first so the last ones to finish are small. */
async function decodeTasks(scene: BenchScene): Promise<DecodeTask[]> {
  const tasks: (DecodeTask & { cost: number })[] = [];
  for (const [name, ratio] of BANDS) {
    const href = path.join(scene.dir, `${name}.tif`);
    const f = await openTiff(href, name);
    const tw = f.image.getTileWidth();
    const th = f.image.getTileHeight();
    const nx = Math.ceil(f.width / tw);
    const ny = Math.ceil(f.height / th);
    await closeTiff(f.tiff);
    for (let ty = 0; ty < ny; ty++) {
      const tiles = Array.from({ length: nx }, (_, tx): [number, number] => [tx, ty]);
      tasks.push({ href, ratio, tiles, cost: nx * tw * th * ratio * ratio });
    }
  }
  return tasks.sort((a, b) => b.cost - a.cost).map(({ cost: _cost, ...t }) => t);
}

export interface DecodeResult {
  seconds: number[];
  tiles: number;
  decodedMB: number;
}

/** a1: `reps` timed passes (after one untimed pass that opens the files in every thread). */
export async function measureDecode(scene: BenchScene, threads: number, reps: number, beforeRep: () => Promise<unknown> = async () => {}): Promise<DecodeResult> {
  const tasks = await decodeTasks(scene);
  const p = pool(threads);
  try {
    const pass = async (): Promise<DecodeReply[]> => Promise.all(tasks.map((t) => p.run(t, { name: 'decodeTiles' }) as Promise<DecodeReply>));
    await pass();
    const seconds: number[] = [];
    let last: DecodeReply[] = [];
    for (let i = 0; i < reps; i++) {
      await beforeRep();
      const t0 = performance.now();
      last = await pass();
      seconds.push((performance.now() - t0) / 1000);
    }
    return { seconds, tiles: last.reduce((a, r) => a + r.tiles, 0), decodedMB: last.reduce((a, r) => a + r.bytes, 0) / 1e6 };
  } finally {
    await p.destroy();
  }
}

export interface InferenceResult {
  /** Wall seconds for `chips` chips, per repetition. */
  seconds: number[];
  /** Chips actually run per repetition (may be a subset). */
  chips: number;
  /** Seconds scaled to the scene's full chip count. */
  sceneSeconds: number[];
}

export interface ModelChoice {
  modelsDir: string;
  cloud: string;
  shadow: string;
}

/** What each chip runs on: its whole read window (FarmVibes, a2) or its write window only (each pixel once, a2'). */
export type InferenceDomain = 'chip' | 'write';

/** The scene's chips' write windows as [width, height], in chip order. */
function writeShapes(scene: BenchScene): [number, number][] {
  return planChips(sceneLayout(scene.width, scene.height)).map((c) => [c.write.width, c.write.height]);
}

/** a2 (or a2'): the scene's chips (or `subset` of them, scaled up) through both models on `threads` threads. */
export async function measureInference(scene: BenchScene, models: ModelChoice, threads: number, reps: number, subset?: number, beforeRep: () => Promise<unknown> = async () => {}, domain: InferenceDomain = 'chip'): Promise<InferenceResult> {
  const chips = Math.min(subset ?? scene.chips, scene.chips);
  const shapes = domain === 'write' ? writeShapes(scene) : undefined;
  const p = pool(threads);
  const base: Omit<InferTask, 'chips'> = { scene: scene.dir, modelsDir: models.modelsDir, cloudModel: models.cloud, shadowModel: models.shadow, intraOpThreads: 1 };
  try {
    // Load the models and read the chips in every thread, untimed.
    // (and, for write windows, cut every shape once, so the timed runs only infer).
    const distinct = shapes ? [...new Map(shapes.map((sh) => [sh.join('x'), sh] as const)).values()] : undefined;
    await Promise.all(Array.from({ length: threads }, () => p.run({ ...base, chips: distinct?.length ?? 1, shapes: distinct }, { name: 'inferChips' })));
    const per = Math.max(1, Math.min(8, Math.ceil(chips / (threads * 4))));
    const seconds: number[] = [];
    for (let i = 0; i < reps; i++) {
      await beforeRep();
      const jobs: Promise<InferReply>[] = [];
      const t0 = performance.now();
      for (let done = 0; done < chips; done += per) {
        const n = Math.min(per, chips - done);
        jobs.push(p.run({ ...base, chips: n, shapes: shapes?.slice(done, done + n) }, { name: 'inferChips' }) as Promise<InferReply>);
      }
      await Promise.all(jobs);
      seconds.push((performance.now() - t0) / 1000);
    }
    return { seconds, chips, sceneSeconds: seconds.map((s) => (s * scene.chips) / chips) };
  } finally {
    await p.destroy();
  }
}
