/**
 * Affinity in the cluster, on a real nats-server with real worker processes: the 144-chip bench
 * scene (the real 29RKH sample mirrored 4 x 4, tiled 1024 like a real COG, 156 source tiles).
 *
 * - Two workers split the lanes (columns of the scene) and together decode well under what two
 *   workers on one shared consumer did (302 = 1.94 x one worker's 156, docs/performance.md):
 *   the model (bench/affinity-model.ts --size 4392 --chips-per-job 3) gives 196 = 1.26 x for this
 *   scene at 3 chips a job (4 jobs a row, two each) when neither worker takes a job from the
 *   other's lanes; each job taken to keep a thread busy (at the scene's end, or when one worker
 *   falls behind) costs up to about 20 decodes (0.13 x). Measured: 216 (1.38 x; one to three jobs
 *   taken). The bound, 1.6 x, allows three such jobs on a loaded machine and still fails a shared
 *   consumer's 1.94 x. A count, never a time.
 * - A worker SIGKILLed mid-scene: the survivor takes over all lanes once the dead one's lease
 *   expires, and the mask still equals the embedded run's (no chip lost).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { parseMetrics } from '../bench/procs.ts';
import { ensureScene, type BenchScene } from '../bench/scene.ts';
import { WORKER_METRICS } from '../shared/metric-names.ts';
import { runCli, spawnCli, type Proc } from './helpers/cli.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

let tmp: string;
let nats: NatsServer;
let scene: BenchScene;
let reference: Buffer;
const procs: Proc[] = [];
/** 4 jobs a row on this 12-chip-wide scene: two workers get two each (see the header). */
const CHIPS_PER_JOB = '3';

async function readMask(file: string): Promise<Buffer> {
  const image = await (await fromFile(file)).getImage();
  const [band] = (await image.readRasters({ interleave: false })) as unknown as Uint8Array[];
  return Buffer.from(band);
}

/** Each test its own streams, consumers and buckets: a failed one leaves nothing in the next one's way. */
let prefix = 'aff0';

function worker(id: string): Proc {
  const p = spawnCli(['worker', '--nats', nats.url, '--nats-prefix', prefix, '--threads', '1', '--worker-id', id, '--allow-root', scene.dir, '--ack-wait-ms', '3000', '--metrics-port', '0', '--log-chips']);
  procs.push(p);
  return p;
}

function coordinator(out: string): Proc {
  const p = spawnCli(['run', '--s2-raster', scene.dir, '--product-mask', 'scl', '--out', out, '--nats', nats.url, '--nats-prefix', prefix, '--ack-wait-ms', '3000', '--chips-per-job', CHIPS_PER_JOB, '--quiet']);
  procs.push(p);
  return p;
}

async function decodes(p: Proc): Promise<number> {
  const url = (await p.waitFor(/metrics on http:\/\/\S+\/metrics/)).replace(/^metrics on /, '');
  const res = await fetch(url);
  return parseMetrics(await res.text()).get(WORKER_METRICS.tileDecodes) ?? NaN;
}

const chipsDone = (p: Proc): number => p.stdout().match(/^chip-done /gm)?.length ?? 0;

async function finished(c: Proc): Promise<void> {
  const r = await c.exited;
  expect(r.code, r.stderr.slice(-2000)).toBe(0);
}

async function stop(ws: Proc[]): Promise<void> {
  for (const w of ws) w.child.kill('SIGTERM');
  for (const w of ws) expect((await w.exited).code).toBe(0);
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-affinity-'));
  scene = await ensureScene(4, () => {});
  expect(scene.chips).toBe(144);
  const r = await runCli(['run', '--s2-raster', scene.dir, '--product-mask', 'scl', '--out', path.join(tmp, 'ref.tif'), '--threads', '2', '--quiet']);
  expect(r.code, r.stderr).toBe(0);
  reference = await readMask(path.join(tmp, 'ref.tif'));
  nats = await startNatsServer();
}, 600_000);

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await nats?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('two workers split the lanes and decode at most 1.6 x what one worker does; masks equal the embedded run', async () => {
  prefix = 'aff1';
  const alone = worker('solo');
  await alone.waitFor(/lanes 0-7 of 0-7 \(1 worker alive\)/);
  await finished(coordinator(path.join(tmp, 'one.tif')));
  expect((await readMask(path.join(tmp, 'one.tif'))).equals(reference)).toBe(true);
  const one = await decodes(alone);
  await stop([alone]);

  const pair = [worker('left'), worker('right')];
  // Both must see each other before the first job, or the first one owns every lane for a while.
  for (const w of pair) await w.waitFor(/\(2 workers alive\)/);
  const lanes = pair.map((w) => /lanes (\S+) of 0-7 \(2 workers alive\)/.exec(w.stderr())![1]).sort();
  expect(lanes).toEqual(['0-3', '4-7']);
  await finished(coordinator(path.join(tmp, 'two.tif')));
  expect((await readMask(path.join(tmp, 'two.tif'))).equals(reference)).toBe(true);
  const two = await Promise.all(pair.map(decodes));
  pair[1]!.child.once('exit', () => console.log(pair.map((w) => w.stderr().match(/jobs from its own lanes.*/)?.[0]).join('; ')));
  for (const w of pair) expect(chipsDone(w)).toBeGreaterThan(0);
  expect(pair.reduce((n, w) => n + chipsDone(w), 0)).toBeGreaterThanOrEqual(144);
  console.log(`tile decodes: one worker ${one}, two workers ${two.join(' + ')} = ${two[0]! + two[1]!} (${((two[0]! + two[1]!) / one).toFixed(2)} x)`);
  expect(one).toBeGreaterThan(0);
  expect(two[0]! + two[1]!).toBeLessThanOrEqual(1.6 * one);

  // SIGTERM hands the lanes back at once: the other worker owns all of them without waiting for a lease.
  pair[0]!.child.kill('SIGTERM');
  await pair[1]!.waitFor(/lanes 0-7 of 0-7 \(1 worker alive\)/, 10_000);
  expect((await pair[0]!.exited).code).toBe(0);
  await stop([pair[1]!]);
}, 600_000);

test('a worker SIGKILLed mid-scene: the survivor takes over its lanes, no chip is lost, the mask equals the embedded run', async () => {
  prefix = 'aff2';
  const pair = [worker('doomed'), worker('survivor')];
  for (const w of pair) await w.waitFor(/\(2 workers alive\)/);
  const c = coordinator(path.join(tmp, 'killed.tif'));
  const deadline = Date.now() + 300_000;
  while (chipsDone(pair[0]!) + chipsDone(pair[1]!) < 40) {
    if (c.child.exitCode !== null) throw new Error(`the run ended before the kill: ${c.stderr().slice(-2000)}`);
    if (Date.now() > deadline) throw new Error('timed out waiting for 40 chips');
    await new Promise((r) => setTimeout(r, 100));
  }
  pair[0]!.child.kill('SIGKILL');
  await pair[0]!.exited;
  // Counted once its pipe is closed: lines it wrote before the kill may still be on their way here.
  const doomedDone = chipsDone(pair[0]!);
  const before = pair[1]!.stderr().length;
  await finished(c);
  // The lease (the workers bucket's TTL: the ack wait) ran out and the survivor saw it.
  expect(pair[1]!.stderr().slice(before)).toMatch(/lanes 0-7 of 0-7 \(1 worker alive\)/);
  expect((await readMask(path.join(tmp, 'killed.tif'))).equals(reference)).toBe(true);
  expect(doomedDone).toBeGreaterThan(0);
  // Every chip was done by one of them. The worker logs a job after its ack: one job (3 chips)
  // acked in the instant before the kill is done but not logged.
  expect(doomedDone + chipsDone(pair[1]!)).toBeGreaterThanOrEqual(144 - Number(CHIPS_PER_JOB));
  await stop([pair[1]!]);
}, 600_000);
