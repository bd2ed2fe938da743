/**
 * Chaos on a real nats-server: a batch of four real-data scenes (one of 144 chips) with two
 * worker processes, during which the test SIGKILLs a worker three times (restarting it each
 * time), restarts nats-server once on the same store, and SIGKILLs and restarts the
 * coordinator once. Every output must equal the embedded run's, and report.json must list
 * every scene once. Faults are placed by progress (chips finished), not by the clock.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { mirrorTile, SCENE_FILES } from '../bench/scene.ts';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { closeTiff, geoInfoOf, openTiff, readSamples } from '../raster/tiff-file.ts';
import { sceneLayout } from '../shared/tiling.ts';
import { runCli, SAMPLE, spawnCli, type Proc } from './helpers/cli.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

let tmp: string;
let nats: NatsServer;
let manifest: string;
const reference = new Map<string, Buffer>();
const SCENES = ['big', 'copy-scl', 'sample-scl', 'sample-none'];
const procs: Proc[] = [];

/** The sample's bands tiled `factor` x `factor`, odd copies mirrored: real pixels, a bigger grid. */
async function mirroredScene(dir: string, factor: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const name of SCENE_FILES) {
    const file = await openTiff(path.join(SAMPLE, `${name}.tif`), `sample ${name}`);
    try {
      const geo = await geoInfoOf(file);
      const [data] = await readSamples(file, { x: 0, y: 0, width: file.width, height: file.height }, [0]);
      const tiled = file.sampleType === 'uint8'
        ? mirrorTile(data as Uint8Array, file.width, file.height, factor, (n) => new Uint8Array(n))
        : mirrorTile(data as Uint16Array, file.width, file.height, factor, (n) => new Uint16Array(n));
      const grid = { ...geo, width: file.width * factor, height: file.height * factor };
      await writeGeoTiff(path.join(dir, `${name}.tif`), { width: grid.width, height: grid.height, data: tiled, geo: grid, tileSize: 512, nodata: 0 });
    } finally {
      await closeTiff(file.tiff);
    }
  }
}

async function readMask(file: string): Promise<Buffer> {
  const image = await (await fromFile(file)).getImage();
  const [band] = (await image.readRasters({ interleave: false })) as unknown as Uint8Array[];
  return Buffer.from(band);
}

const workerArgs = (id: string): string[] => ['worker', '--nats', nats.url, '--threads', '1', '--max-in-flight', '2', '--worker-id', id, '--allow-root', tmp, '--ack-wait-ms', '3000', '--log-chips'];
const coordinatorArgs = (): string[] => ['batch', '--manifest', manifest, '--out-dir', path.join(tmp, 'out'), '--nats', nats.url, '--ack-wait-ms', '3000', '--max-in-flight', '8', '--quiet'];

function spawnTracked(args: string[]): Proc {
  const p = spawnCli(args);
  procs.push(p);
  return p;
}

/** Chips finished by every worker process this test started, killed ones included. */
const chipsDone = (): number => procs.reduce((n, p) => n + (p.stdout().match(/^chip-done /gm)?.length ?? 0), 0);

async function until(what: string, ok: () => boolean, coordinator: () => Proc, timeoutMs = 150_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (coordinator().child.exitCode !== null) throw new Error(`the batch ended before ${what}: ${coordinator().stderr().slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function kill9(p: Proc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-chaos-'));
  await mirroredScene(path.join(tmp, 'big'), 4);
  const sample = path.join(tmp, 'sample');
  const copy = path.join(tmp, 'copy');
  for (const dir of [sample, copy]) {
    mkdirSync(dir);
    for (const f of SCENE_FILES) copyFileSync(path.join(SAMPLE, `${f}.tif`), path.join(dir, `${f}.tif`));
  }
  manifest = path.join(tmp, 'scenes.json');
  writeFileSync(manifest, JSON.stringify([
    { input: path.join(tmp, 'big'), product_mask: 'scl', name: 'big' },
    { input: copy, product_mask: 'scl', name: 'copy-scl' },
    { input: sample, product_mask: 'scl', name: 'sample-scl' },
    { input: sample, product_mask: 'none', name: 'sample-none' },
  ]));
  // The reference: the same batch, embedded.
  const r = await runCli(['batch', '--manifest', manifest, '--out-dir', path.join(tmp, 'ref'), '--threads', '2', '--quiet']);
  expect(r.code, r.stderr).toBe(0);
  for (const s of SCENES) reference.set(s, await readMask(path.join(tmp, 'ref', `${s}.tif`)));
  nats = await startNatsServer();
}, 240_000);

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await nats?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('4 scenes (one of 144 chips), 2 workers: 3 worker kills, a server restart, a coordinator kill; outputs equal the embedded run', async () => {
  const big = await openTiff(path.join(tmp, 'big', 'B02.tif'), 'big B02');
  expect(sceneLayout(big.width, big.height).count).toBe(144);
  await closeTiff(big.tiff);

  const workers = [spawnTracked(workerArgs('w1')), spawnTracked(workerArgs('w2'))];
  let coordinator = spawnTracked(coordinatorArgs());
  const coord = (): Proc => coordinator;
  const restartWorker = async (i: number, id: string): Promise<void> => {
    await kill9(workers[i]!);
    workers[i] = spawnTracked(workerArgs(id));
  };

  await until('10 chips', () => chipsDone() >= 10, coord);
  await restartWorker(0, 'w1-b');
  await until('30 chips', () => chipsDone() >= 30, coord);
  await nats.stop();
  await new Promise((r) => setTimeout(r, 500));
  await nats.start();
  await until('50 chips', () => chipsDone() >= 50, coord);
  await kill9(coordinator);
  coordinator = spawnTracked(coordinatorArgs());
  await until('70 chips', () => chipsDone() >= 70, coord);
  await restartWorker(1, 'w2-b');
  await until('90 chips', () => chipsDone() >= 90, coord);
  await restartWorker(0, 'w1-c');

  const done = await Promise.race([coordinator.exited, new Promise<null>((r) => setTimeout(() => r(null), 180_000))]);
  expect(done, `the restarted coordinator did not finish: ${coordinator.stderr().slice(-2000)}`).not.toBeNull();
  expect(done!.code, done!.stderr).toBe(0);

  const report = JSON.parse(readFileSync(path.join(tmp, 'out', 'report.json'), 'utf8')) as { scenes: { output: string; status: string }[] };
  expect(report.scenes.map((s) => path.basename(s.output, '.tif')).sort()).toEqual([...SCENES].sort());
  // A scene written before the coordinator was killed is skipped by the restarted one, not redone.
  for (const s of report.scenes) expect(['done', 'skipped'], JSON.stringify(s)).toContain(s.status);
  for (const name of SCENES) expect((await readMask(path.join(tmp, 'out', `${name}.tif`))).equals(reference.get(name)!), name).toBe(true);

  for (const w of workers) w.child.kill('SIGTERM');
  for (const w of workers) expect((await w.exited).code).toBe(0);
}, 300_000);
