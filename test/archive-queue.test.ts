/**
 * The archive tier end to end, every component real: a nats-server, 2 coordinators and 2
 * workers as processes, 6 scenes (3 copies of the real 29RKH sample, each with the SCL product
 * mask and without one). One coordinator is killed with SIGKILL mid-scene; its scene goes to the
 * other after the scene ack wait, which replays the chips already done. Every output equals the
 * embedded batch of the same manifest, each scene is done exactly once, no chip is computed
 * twice, submitting again queues nothing, and status / report describe the running archive.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { runCli, SAMPLE, spawnCli, type Proc } from './helpers/cli.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

let tmp: string;
let nats: NatsServer;
let manifest: string;
const procs: Proc[] = [];

async function readMask(file: string): Promise<Buffer> {
  const image = await (await fromFile(file)).getImage();
  const [band] = (await image.readRasters({ interleave: false })) as unknown as Uint8Array[];
  return Buffer.from(band);
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-archive-'));
  nats = await startNatsServer();
  // Three scene folders of links to the sample's band files: three scene identities, same pixels
  // (the workers allow the sample's folder too: roots are checked on the links' real paths).
  const lines: string[] = [];
  for (let k = 1; k <= 3; k++) {
    const dir = path.join(tmp, 'scenes', `copy${k}`);
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(SAMPLE).filter((f) => f.endsWith('.tif'))) symlinkSync(path.join(SAMPLE, f), path.join(dir, f));
    lines.push(`{"input": "${dir}", "product_mask": "scl", "name": "copy${k}-scl"}`, `{"input": "${dir}", "product_mask": "none", "name": "copy${k}-none"}`);
  }
  manifest = path.join(tmp, 'archive.json');
  writeFileSync(manifest, `[${lines.join(',\n')}]\n`);
});

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await nats?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const cluster = (): string[] => ['--nats', nats.url, '--nats-prefix', 'arch'];
const chipTiming = ['--ack-wait-ms', '3000'];
const timing = [...chipTiming, '--scene-ack-wait-ms', '4000'];

function start(args: string[]): Proc {
  const p = spawnCli(args);
  procs.push(p);
  return p;
}

async function status(): Promise<Record<string, unknown> & { done: number; queued: number; running: number; failed: number; skipped: number; total: number }> {
  const r = await runCli(['status', 'big', ...cluster(), '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

test('2 coordinators, 2 workers, a coordinator killed mid-scene: every scene done once, outputs equal the embedded run', async () => {
  const refDir = path.join(tmp, 'embedded');
  const ref = await runCli(['batch', '--manifest', manifest, '--out-dir', refDir, '--quiet']);
  expect(ref.code, ref.stderr).toBe(0);
  expect(JSON.parse(readFileSync(path.join(refDir, 'report.json'), 'utf8')).done).toBe(6);

  const outDir = path.join(tmp, 'cluster');
  const workers = ['w1', 'w2'].map((id) => start(['worker', ...cluster(), '--threads', '1', '--max-in-flight', '2', '--worker-id', id, '--allow-root', tmp, '--allow-root', SAMPLE, '--log-chips', ...chipTiming]));
  const submitted = await runCli(['submit', ...cluster(), '--archive', 'big', '--out-dir', outDir, '--manifest', manifest, '--json']);
  expect(submitted.code, submitted.stderr).toBe(0);
  expect(JSON.parse(submitted.stdout)).toMatchObject({ scenes: 6, queued: 6 });
  // Nothing has run yet: all queued, no coordinator.
  expect(await status()).toMatchObject({ total: 6, queued: 6, done: 0, coordinatorsAlive: [] });

  const coordinator = (id: string): Proc => start(['coordinator', ...cluster(), '--coordinator-id', id, '--scenes-in-flight', '1', '--max-in-flight', '2', ...timing]);
  const victim = coordinator('c-victim');
  const survivor = coordinator('c-survivor');
  await victim.waitFor(/: [1-6]\/9 chips/, 90_000);
  victim.child.kill('SIGKILL');
  await victim.exited;

  // While the archive runs: a scene is running or queued, and the victim's scene is still on its name.
  const during = await status();
  expect(during.total).toBe(6);
  expect(during.queued + during.running).toBeGreaterThan(0);
  const unknown = await runCli(['status', 'nosuch', ...cluster()]);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/^improve-cloud-mask: error \[BAD_OPTION\]: no archive named nosuch \(submitted archives: big\)( \(see improve-cloud-mask status --help\))?$/m);
  const text = await runCli(['status', 'big', ...cluster()]);
  expect(text.stdout).toMatch(/^archive big: 6 scenes: \d+ queued, \d+ running, \d+ done, 0 skipped, 0 failed$/m);
  const midReport = path.join(tmp, 'mid-report.json');
  expect((await runCli(['report', 'big', ...cluster(), '--out', midReport])).code).toBe(0);
  expect(JSON.parse(readFileSync(midReport, 'utf8')).scenes).toHaveLength(6);

  let final = during;
  for (let i = 0; i < 120 && final.done < 6; i++) {
    await new Promise((r) => setTimeout(r, 1500));
    final = await status();
  }
  expect(final).toMatchObject({ total: 6, done: 6, queued: 0, running: 0, failed: 0, skipped: 0, etaSeconds: 0 });
  expect(final.coordinatorsAlive).toEqual(['c-survivor']);
  // The killed coordinator's scene was redelivered and finished by the survivor, resuming its chips.
  expect(survivor.stderr()).toMatch(/scene big\/\S+ \(delivery [2-9]\)/);
  expect(survivor.stderr()).toMatch(/resuming .*: [1-9] of 9 chips already done/);

  for (const name of ['copy1-scl', 'copy1-none', 'copy2-scl', 'copy2-none', 'copy3-scl', 'copy3-none']) {
    const [a, b] = await Promise.all([readMask(path.join(outDir, `${name}.tif`)), readMask(path.join(refDir, `${name}.tif`))]);
    expect(a.equals(b), name).toBe(true);
  }

  // Submitting again, days later or now: nothing queued.
  const again = await runCli(['submit', ...cluster(), '--archive', 'big', '--out-dir', outDir, '--manifest', manifest, '--json']);
  expect(JSON.parse(again.stdout)).toMatchObject({ queued: 0 });
  expect(again.stderr).toMatch(/0 of 6 scenes queued \(already: 6 done\)/);

  const reportFile = path.join(tmp, 'report.json');
  expect((await runCli(['report', 'big', ...cluster(), '--out', reportFile])).code).toBe(0);
  const report = JSON.parse(readFileSync(reportFile, 'utf8'));
  expect(report.archive).toMatchObject({ name: 'big', outDir });
  expect(report.scenes.map((s: { state: string }) => s.state)).toEqual(Array(6).fill('done'));
  expect(Object.values(report.status.coordinators as Record<string, { done: number }>).reduce((n, c) => n + c.done, 0)).toBe(6);
  // ... and the archive's STAC collection links the 6 items beside the masks.
  const collection = JSON.parse(readFileSync(path.join(outDir, 'collection.json'), 'utf8'));
  expect(collection).toMatchObject({ type: 'Collection', id: 'big' });
  expect(collection.links.filter((l: { rel: string }) => l.rel === 'item')).toHaveLength(6);

  survivor.child.kill('SIGTERM');
  expect((await survivor.exited).code).toBe(0);
  for (const w of workers) w.child.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.exited));
  // No chip computed twice: the survivor replayed the victim's finished chips.
  const chips = workers.flatMap((w) => [...w.stdout().matchAll(/^chip-done (\S+) (\d+) /gm)].map((m) => `${m[1]}#${m[2]}`));
  expect(new Set(chips).size).toBe(54);
  expect(chips.length).toBe(54);
}, 240_000);

test('submit, coordinator and status without --nats, or with a bad archive name: a one-line error, nothing written', async () => {
  const outDir = path.join(tmp, 'never');
  const submit = await runCli(['submit', '--archive', 'a', '--out-dir', outDir, '--manifest', manifest]);
  expect(submit.code).toBe(2);
  expect(submit.stderr).toBe('improve-cloud-mask: error [BAD_OPTION]: submit needs --nats URL (the scene queue lives in JetStream) (see improve-cloud-mask submit --help)\n');
  const bad = await runCli(['submit', ...cluster(), '--archive', 'no spaces', '--out-dir', outDir, '--manifest', manifest]);
  expect(bad.stderr).toMatch(/^improve-cloud-mask: error \[BAD_OPTION\]: archive name must match \[A-Za-z0-9_-\]\{1,64\}, got "no spaces" \(see improve-cloud-mask submit --help\)\n$/);
  expect(existsSync(outDir)).toBe(false);
  expect((await runCli(['coordinator'])).stderr).toMatch(/coordinator needs --nats URL/);
  expect((await runCli(['status', ...cluster()])).stderr).toMatch(/status needs an archive name: status NAME --nats URL/);
}, 60_000);
