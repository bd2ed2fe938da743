/**
 * Inferring each pixel once: chips run over their write window plus the models' margin (from the
 * manifests) instead of the whole 512x512 chip, and the outputs stay bit-identical to FarmVibes'
 * per-chip path. Real data (the 29RKH sample and a stacked scene cut from it with nodata), real
 * onnxruntime sessions in real Piscina threads, the real CLI embedded and against a real
 * nats-server, and a generated model that looks further than the chips' overlap.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { chipWindow } from '../coordinator/scene-run.ts';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import { writeWideFieldPair } from '../scripts/lib/wide-field.ts';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, pairDomain } from '../shared/manifest.ts';
import { boundingWindow, unionWindow, type TileJob, type TileResult } from '../shared/messages.ts';
import { planChips, sceneLayout, type ChipPlan } from '../shared/tiling.ts';
import { defaultModelsDir, loadModelPair, predictPair, readManifest, releasePair } from '../worker/models.ts';
import { jobWindows } from '../worker/chip-thread.ts';
import { ChipPool } from '../worker/pool.ts';
import { runCli, SAMPLE, spawnCli, type Proc } from './helpers/cli.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-domain-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Raster = Uint8Array | Float32Array;

async function readRaster(file: string): Promise<Raster> {
  const image = await (await fromFile(file)).getImage();
  const [band] = (await image.readRasters({ interleave: false })) as unknown as Raster[];
  return band!;
}

const sameBits = (a: Raster, b: Raster): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** The outputs of one CLI run: mask, classes, both probability rasters, and its JSON report. */
interface Outputs {
  mask: Raster;
  classes: Raster;
  cloud: Raster;
  shadow: Raster;
  report: { inferenceDomain: string };
}

function runArgs(name: string, input: string, extra: string[]): { args: string[]; dir: string } {
  const dir = path.join(tmp, name);
  const args = ['run', '--s2-raster', input, '--product-mask', 'none', '--out', path.join(dir, 'mask.tif'), '--classes', path.join(dir, 'classes.tif'), '--probabilities', dir, '--json', '--quiet', ...extra];
  return { args, dir };
}

async function outputsOf(dir: string, stdout: string): Promise<Outputs> {
  return {
    mask: await readRaster(path.join(dir, 'mask.tif')),
    classes: await readRaster(path.join(dir, 'classes.tif')),
    cloud: await readRaster(path.join(dir, 'cloud_probability.tif')),
    shadow: await readRaster(path.join(dir, 'shadow_probability.tif')),
    report: JSON.parse(stdout),
  };
}

async function cliRun(name: string, input: string, extra: string[] = []): Promise<Outputs> {
  const { args, dir } = runArgs(name, input, extra);
  const r = await runCli(args);
  expect(r.code, r.stderr).toBe(0);
  return outputsOf(dir, r.stdout);
}

function expectIdentical(a: Outputs, b: Outputs): void {
  expect(sameBits(a.mask, b.mask), 'mask').toBe(true);
  expect(sameBits(a.classes, b.classes), 'classes').toBe(true);
  expect(sameBits(a.cloud, b.cloud), 'cloud probability').toBe(true);
  expect(sameBits(a.shadow, b.shadow), 'shadow probability').toBe(true);
}

/**
 * The farthest (Chebyshev distance) any output of the pair moves when one input pixel changes,
 * over a real-data patch of `size` pixels: the pair's true receptive-field radius there.
 */
async function measuredRadius(modelsDir: string, cloud: string, shadow: string, size: number): Promise<number> {
  const reader = await openScene(await resolveSource(SAMPLE));
  const patch = Float32Array.from(await reader.readWindow({ x: 500, y: 300, width: size, height: size }));
  await reader.close();
  const pair = await loadModelPair(cloud, shadow, modelsDir);
  try {
    const base = await predictPair(pair, patch, size, size);
    const [c0, s0] = [Float32Array.from(base.cloud), Float32Array.from(base.shadow)];
    const centre = size >> 1;
    const plane = size * size;
    const bumped = Float32Array.from(patch);
    for (let b = 0; b < 12; b++) bumped[b * plane + centre * size + centre] = bumped[b * plane + centre * size + centre]! * 1.5 + 700;
    const moved = await predictPair(pair, bumped, size, size);
    let radius = -1;
    for (let i = 0; i < plane; i++) {
      if (moved.cloud[i] !== c0[i] || moved.shadow[i] !== s0[i]) {
        radius = Math.max(radius, Math.abs((i % size) - centre), Math.abs(Math.floor(i / size) - centre));
      }
    }
    return radius;
  } finally {
    await releasePair(pair);
  }
}

describe('the manifests say how far the models look', () => {
  test('the bundled pair: one changed pixel moves outputs exactly 1 pixel away (overlapPx 1, the 3x3 mean)', async () => {
    const dir = defaultModelsDir();
    expect((await readManifest(DEFAULT_CLOUD_MODEL, dir)).overlapPx).toBe(1);
    expect((await readManifest(DEFAULT_SHADOW_MODEL, dir)).overlapPx).toBe(1);
    expect(await measuredRadius(dir, DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, 33)).toBe(1);
  });
});

/** The stacked 12-band sample, cut to `height` rows, with every band zeroed over `hole` (nodata). */
async function stackedWithNodata(height: number, hole: { x0: number; x1: number; y0: number; y1: number }): Promise<string> {
  const reader = await openScene(await resolveSource(SAMPLE));
  const { width } = reader.geo;
  const data = await reader.readWindow({ x: 0, y: 0, width, height });
  const geo = reader.geo;
  await reader.close();
  const plane = width * height;
  for (let b = 0; b < 12; b++) for (let y = hole.y0; y < hole.y1; y++) data.fill(0, b * plane + y * width + hole.x0, b * plane + y * width + hole.x1);
  const file = path.join(tmp, `stacked-${height}.tif`);
  await writeGeoTiff(file, { width, height, bands: 12, data, geo: { ...geo, height }, nodata: 0, predictor: 2 });
  return file;
}

/** Jobs of one chip row each, their chips carrying inference windows for `margin` (null = whole chips). */
async function rowJobs(input: string, width: number, height: number, margin: number | null): Promise<TileJob[]> {
  const source = await resolveSource(input);
  const chips = planChips(sceneLayout(width, height));
  const rows = new Map<number, ChipPlan[]>();
  for (const c of chips) rows.set(c.row, [...(rows.get(c.row) ?? []), c]);
  return [...rows.values()].map((row) => ({
    type: 'tile-job', v: 1, runKey: 'domain-test', source,
    chips: row.map((c) => chipWindow(c, margin)),
    models: { cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL },
    thresholds: { cloud: 0.3, shadow: 0.2 }, harmonize: false, withProbabilities: true,
  }));
}

async function poolRun(pool: ChipPool, jobs: TileJob[]): Promise<TileResult[]> {
  return (await Promise.all(jobs.map((j) => pool.process(j)))).flat().sort((a, b) => a.chipIndex - b.chipIndex);
}

function expectSameResults(once: TileResult[], whole: TileResult[]): void {
  expect(once.map((r) => r.chipIndex)).toEqual(whole.map((r) => r.chipIndex));
  for (let i = 0; i < whole.length; i++) {
    const [a, b] = [once[i]!, whole[i]!];
    for (const k of ['cloud', 'shadow', 'nodata', 'cloudProb', 'shadowProb'] as const) expect(sameBits(a[k]!, b[k]!), `chip ${b.chipIndex} ${k}`).toBe(true);
  }
}

describe('what a job reads', () => {
  test('the bounding box of its chips\' domains: write windows + margin where exact, whole chips otherwise and for inline jobs', async () => {
    const dir = defaultModelsDir();
    const rule = pairDomain(await readManifest(DEFAULT_CLOUD_MODEL, dir), await readManifest(DEFAULT_SHADOW_MODEL, dir));
    expect(rule).toEqual({ kind: 'window', margin: 1 });
    const [top, middle] = await rowJobs(SAMPLE, 1098, 1098, 1);
    for (const job of [top!, middle!]) {
      const { union, domains } = jobWindows(job, rule);
      expect(domains).toEqual(job.chips.map((c) => c.infer));
      expect(union).toEqual(boundingWindow(job.chips.map((c) => c.infer!)));
      // Rows of 512-pixel chips, of which about 374 rows are written: about a quarter less to read.
      expect(union.width * union.height).toBeLessThan(0.8 * unionWindow(job.chips).width * unionWindow(job.chips).height);
    }
    // Windows too small for the models (margin 0 < overlapPx 1), a per-chip pair, an inline job: the chips' read windows.
    const [tooSmall] = await rowJobs(SAMPLE, 1098, 1098, 0);
    expect(jobWindows(tooSmall!, rule).union).toEqual(unionWindow(tooSmall!.chips));
    expect(jobWindows(middle!, { kind: 'per-chip', reason: 'test' }).union).toEqual(unionWindow(middle!.chips));
    const inline = { ...middle!, pixels: new Uint16Array(12 * unionWindow(middle!.chips).width * unionWindow(middle!.chips).height) };
    expect(jobWindows(inline, rule).union).toEqual(unionWindow(middle!.chips));
  });
});

describe('chip threads: write window + margin gives the per-chip bits', () => {
  test('29RKH sample and a 450-row stacked cut with nodata (an all-nodata chip, rows past the scene edge)', async () => {
    const pool = new ChipPool({ threads: 2, modelsDir: defaultModelsDir(), worker: 'domain-test' });
    try {
      const once = await poolRun(pool, await rowJobs(SAMPLE, 1098, 1098, 1));
      const whole = await poolRun(pool, await rowJobs(SAMPLE, 1098, 1098, null));
      expectSameResults(once, whole);
      const inferred = (rs: TileResult[]): number => rs.reduce((a, r) => a + r.inferredPixels!, 0);
      expect(inferred(whole)).toBe(9 * 512 * 512);
      // Each output pixel once, plus 1-pixel seams.
      expect(inferred(once)).toBeLessThan(1098 * 1098 * 1.01);
      // A job whose windows are too small for this thread's manifests (margin 0 < overlapPx 1): whole chips.
      const tooSmall = await poolRun(pool, await rowJobs(SAMPLE, 1098, 1098, 0));
      expect(inferred(tooSmall)).toBe(9 * 512 * 512);
      expectSameResults(tooSmall, whole);

      // 450 rows: chips read 62 rows past the scene (nodata) and the first chip is all nodata.
      const cut = await stackedWithNodata(450, { x0: 0, x1: 560, y0: 0, y1: 450 });
      const onceCut = await poolRun(pool, await rowJobs(cut, 1098, 450, 1));
      const wholeCut = await poolRun(pool, await rowJobs(cut, 1098, 450, null));
      expectSameResults(onceCut, wholeCut);
      expect(wholeCut[0]!.skipped).toBe(true);
      expect(onceCut[0]!.skipped).toBe(true);
      expect(onceCut[1]!.skipped).toBe(false);
    } finally {
      await pool.close();
    }
  });
});

describe('end to end on the real 29RKH sample', () => {
  let perChip: Outputs;
  let nats: NatsServer;
  beforeAll(async () => {
    perChip = await cliRun('per-chip', SAMPLE, ['--per-chip']);
    nats = await startNatsServer();
  });
  afterAll(async () => {
    await nats?.close();
  });

  test('embedded: mask, classes and probabilities are bit-identical to --per-chip', async () => {
    expect(perChip.report.inferenceDomain).toBe('whole chips (per_chip)');
    const once = await cliRun('once', SAMPLE);
    expect(once.report.inferenceDomain).toBe('write windows + 1 px (9 of 9 chips)');
    expectIdentical(once, perChip);
  });

  test('cluster (nats-server, 2 worker processes), pixels read by the workers or inline: bit-identical to the embedded --per-chip run', async () => {
    const workers: Proc[] = [0, 1].map((i) => spawnCli(['worker', '--nats', nats.url, '--nats-prefix', 'dom', '--threads', '1', '--worker-id', `w${i}`, '--allow-root', path.dirname(SAMPLE)]));
    try {
      for (const [name, extra] of [['cluster', []], ['cluster-inline', ['--inline-pixels']]] as const) {
        const { args, dir } = runArgs(name, SAMPLE, ['--nats', nats.url, '--nats-prefix', 'dom', ...extra]);
        const r = await runCli(args);
        expect(r.code, r.stderr).toBe(0);
        const once = await outputsOf(dir, r.stdout);
        expect(once.report.inferenceDomain).toBe('write windows + 1 px (9 of 9 chips)');
        expectIdentical(once, perChip);
      }
    } finally {
      for (const w of workers) w.child.kill('SIGTERM');
      await Promise.all(workers.map((w) => w.exited));
    }
  });
});

describe('a model that looks further than the chips overlap', () => {
  // Three 3x3 convolutions dilated by 48: radius 144, wider than the sample's overlaps (about 109).
  const options = { dilation: 48, centreDn: 3430, spreadDn: 200 };
  let modelsDir: string;
  beforeAll(() => {
    modelsDir = path.join(tmp, 'wide-models');
    rmSync(modelsDir, { recursive: true, force: true });
    mkdirSync(modelsDir);
  });

  test('truthful manifest: whole chips, bit-identical to --per-chip; a manifest that understates it would differ', async () => {
    const truthful = writeWideFieldPair(modelsDir, 'wide', options, 144);
    const lying = writeWideFieldPair(modelsDir, 'wide-lying', options, 1);
    expect(await measuredRadius(modelsDir, truthful.cloud, truthful.shadow, 301)).toBe(144);
    const flags = (m: { cloud: string; shadow: string }): string[] => ['--models-dir', modelsDir, '--cloud-model', m.cloud, '--shadow-model', m.shadow];

    const reference = await cliRun('wide-per-chip', SAMPLE, [...flags(truthful), '--per-chip']);
    const planned = await cliRun('wide', SAMPLE, flags(truthful));
    expect(planned.report.inferenceDomain).toMatch(/^whole chips \(the models' 144 px margin/);
    expectIdentical(planned, reference);

    // The same graph run over write window + 1 px: other values near the chips' inner edges.
    const wrong = await cliRun('wide-lying', SAMPLE, flags(lying));
    expect(wrong.report.inferenceDomain).toBe('write windows + 1 px (9 of 9 chips)');
    expect(sameBits(wrong.cloud, reference.cloud)).toBe(false);
    expect(sameBits(wrong.mask, reference.mask)).toBe(false);
    // Only where a chip's whole read window reached more than 1 px beyond its write window, and
    // less than 144 px from the write window's edge: the zero padding the smaller domain sees.
    const chips = planChips(sceneLayout(1098, 1098));
    let differing = 0;
    for (let i = 0; i < reference.cloud.length; i++) {
      if (wrong.cloud[i] === reference.cloud[i]) continue;
      differing++;
      const x = i % 1098;
      const y = Math.floor(i / 1098);
      const c = chips.find((k) => x >= k.write.x && x < k.write.x + k.write.width && y >= k.write.y && y < k.write.y + k.write.height)!;
      const inner = [x - c.write.x, c.write.x + c.write.width - 1 - x, y - c.write.y, c.write.y + c.write.height - 1 - y]
        .filter((_, side) => [c.write.x > c.read.x, c.read.x + 512 > c.write.x + c.write.width, c.write.y > c.read.y, c.read.y + 512 > c.write.y + c.write.height][side]);
      expect(Math.min(...inner)).toBeLessThan(144);
    }
    expect(differing).toBeGreaterThan(1000);
  });
});
