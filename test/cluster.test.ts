/**
 * Cluster mode against a real nats-server: coordinator and workers as separate processes, faults
 * injected with kill -9 and a server restart; every output compared bit for bit with the
 * embedded run on the real 29RKH scene.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import { encodeMessage } from '../shared/messages.ts';
import { names } from '../shared/subjects.ts';
import { runCli, SAMPLE, spawnCli, type Proc } from './helpers/cli.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

let tmp: string;
let nats: NatsServer;
let reference: Buffer;
let prefixCount = 0;

async function readMask(file: string): Promise<Buffer> {
  const image = await (await fromFile(file)).getImage();
  const [band] = (await image.readRasters({ interleave: false })) as unknown as Uint8Array[];
  return Buffer.from(band);
}

/** A fresh subject prefix per test: its own streams and consumer on the shared server. */
function freshPrefix(): string {
  return `t${++prefixCount}`;
}

function startWorker(prefix: string, id: string, extra: string[] = []): Proc {
  return spawnCli(['worker', '--nats', nats.url, '--nats-prefix', prefix, '--threads', '1', '--max-in-flight', '2', '--worker-id', id, '--allow-root', path.dirname(SAMPLE), '--allow-root', tmp, '--ack-wait-ms', '3000', '--max-deliveries', '2', '--log-chips', ...extra]);
}

async function stopWorkers(workers: Proc[]): Promise<void> {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
  const results = await Promise.all(workers.map((w) => w.exited));
  for (const [i, r] of results.entries()) {
    if (workers[i].child.signalCode !== 'SIGKILL') expect(r.code, r.stderr).toBe(0);
  }
}

function chipLines(workers: Proc[]): number[] {
  return workers.flatMap((w) => [...w.stdout().matchAll(/^chip-done \S+ (\d+) /gm)].map((m) => Number(m[1])));
}

function coordinatorArgs(prefix: string, out: string, extra: string[] = []): string[] {
  return ['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', out, '--nats', nats.url, '--nats-prefix', prefix, '--ack-wait-ms', '3000', '--max-deliveries', '2', ...extra];
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-cluster-'));
  nats = await startNatsServer();
  const out = path.join(tmp, 'embedded.tif');
  const r = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', out, '--quiet']);
  expect(r.code, r.stderr).toBe(0);
  reference = await readMask(out);
});

afterAll(async () => {
  await nats?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('cluster mode over NATS JetStream', () => {
  test('run --nats with 2 worker processes is bit-identical to the embedded run', async () => {
    const prefix = freshPrefix();
    const workers = [startWorker(prefix, 'w1'), startWorker(prefix, 'w2')];
    try {
      const out = path.join(tmp, 'two-workers.tif');
      const r = await runCli(coordinatorArgs(prefix, out));
      expect(r.code, r.stderr).toBe(0);
      expect((await readMask(out)).equals(reference)).toBe(true);
    } finally {
      await stopWorkers(workers);
    }
    // Both workers took part and every chip ran exactly once.
    expect(chipLines(workers).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test('kill -9 of one of two workers mid-scene: the scene completes, bit-identical', async () => {
    const prefix = freshPrefix();
    const victim = startWorker(prefix, 'victim');
    const survivor = startWorker(prefix, 'survivor');
    try {
      const out = path.join(tmp, 'worker-killed.tif');
      const coordinator = spawnCli(coordinatorArgs(prefix, out));
      await victim.waitFor(/^chip-done /m);
      victim.child.kill('SIGKILL');
      const r = await coordinator.exited;
      expect(r.code, r.stderr).toBe(0);
      expect((await readMask(out)).equals(reference)).toBe(true);
    } finally {
      await stopWorkers([victim, survivor]);
    }
  });

  test('kill -9 of the coordinator mid-scene, then the same command again: completes, bit-identical, nothing recomputed', async () => {
    const prefix = freshPrefix();
    const workers = [startWorker(prefix, 'w1'), startWorker(prefix, 'w2')];
    try {
      const out = path.join(tmp, 'coordinator-killed.tif');
      const args = coordinatorArgs(prefix, out, ['--max-in-flight', '2']);
      const first = spawnCli(args);
      await first.waitFor(/: [1-6]\/9 chips/);
      first.child.kill('SIGKILL');
      await first.exited;
      expect(existsSync(out)).toBe(false);
      const second = await runCli(args);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).toMatch(/resuming .*: [1-9] of 9 chips already done/);
      expect((await readMask(out)).equals(reference)).toBe(true);
    } finally {
      await stopWorkers(workers);
    }
    // Each chip was computed once across both coordinator lives.
    expect(chipLines(workers).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test('nats-server restarted mid-run (same store): the run completes, bit-identical', async () => {
    const prefix = freshPrefix();
    const workers = [startWorker(prefix, 'w1'), startWorker(prefix, 'w2')];
    try {
      const out = path.join(tmp, 'server-restarted.tif');
      const coordinator = spawnCli(coordinatorArgs(prefix, out, ['--max-in-flight', '2']));
      await coordinator.waitFor(/: [1-6]\/9 chips/);
      await nats.stop();
      await new Promise((r) => setTimeout(r, 1000));
      await nats.start();
      const r = await coordinator.exited;
      expect(r.code, r.stderr).toBe(0);
      expect((await readMask(out)).equals(reference)).toBe(true);
    } finally {
      await stopWorkers(workers);
    }
  });

  test('a batch with a corrupt tile: dead-lettered at first delivery (CORRUPT_INPUT is permanent), that scene fails with the reason, the others complete', async () => {
    const prefix = freshPrefix();
    // A stacked copy of the scene with one compressed tile overwritten with garbage.
    const reader = await openScene(await resolveSource(SAMPLE));
    const { width, height } = reader.geo;
    const stack = await reader.readWindow({ x: 0, y: 0, width, height });
    const corrupt = path.join(tmp, 'corrupt.tif');
    await writeGeoTiff(corrupt, { width, height, bands: 12, data: stack, geo: reader.geo });
    await reader.close();
    const image = await (await fromFile(corrupt)).getImage();
    const offsets = Array.from((await image.fileDirectory.loadValue('TileOffsets')) as ArrayLike<number>, Number);
    const counts = Array.from((await image.fileDirectory.loadValue('TileByteCounts')) as ArrayLike<number>, Number);
    const bytes = readFileSync(corrupt);
    bytes.fill(0xa5, offsets[0], offsets[0] + counts[0]);
    writeFileSync(corrupt, bytes);
    const manifest = path.join(tmp, 'archive.txt');
    writeFileSync(manifest, `# two scenes\n${SAMPLE} scl\n${corrupt} none\n`);
    const outDir = path.join(tmp, 'archive-out');
    const workers = [startWorker(prefix, 'w1'), startWorker(prefix, 'w2')];
    try {
      const r = await runCli(['batch', '--manifest', manifest, '--out-dir', outDir, '--nats', nats.url, '--nats-prefix', prefix, '--ack-wait-ms', '3000', '--max-deliveries', '2']);
      expect(r.code).toBe(1);
      const report = JSON.parse(readFileSync(path.join(outDir, 'report.json'), 'utf8'));
      expect(report.done).toBe(1);
      expect(report.failed).toBe(1);
      const failed = report.scenes.find((s: { status: string }) => s.status === 'failed');
      expect(failed.input).toBe(corrupt);
      expect(failed.reason).toMatch(/DEAD_LETTER: .*chips (0, 1, 2 \(row 0|3, 4, 5 \(row 1), from col 0\) failed after 1 delivery on w[12]: CORRUPT_INPUT: .*corrupt\.tif: reading window .*does not decode/);
      expect(existsSync(failed.output)).toBe(false);
      const ok = report.scenes.find((s: { status: string }) => s.status === 'done');
      expect((await readMask(ok.output)).equals(reference)).toBe(true);
      // Run again: the finished scene is skipped by its parameter hash.
      const again = await runCli(['batch', '--manifest', manifest, '--out-dir', outDir, '--nats', nats.url, '--nats-prefix', prefix, '--ack-wait-ms', '3000', '--max-deliveries', '2']);
      expect(JSON.parse(readFileSync(path.join(outDir, 'report.json'), 'utf8')).skipped).toBe(1);
      expect(again.code).toBe(1);
    } finally {
      await stopWorkers(workers);
    }
  });

  test('malformed and oversized messages on the tile subject: workers keep working', async () => {
    const prefix = freshPrefix();
    const n = names(prefix);
    const workers = [startWorker(prefix, 'w1')];
    try {
      // Let the worker create the topology, then poison the queue before the real scene.
      await workers[0].waitFor(/pulling from/);
      const nc = await connect({ servers: nats.url });
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      for (let i = 0; i < 50 && !(await jsm.streams.info(n.jobsStream).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 100));
      await js.publish(n.jobSubject('junk', 0), new TextEncoder().encode('not msgpack at all'));
      await js.publish(n.jobSubject('junk', 1), encodeMessage({ type: 'tile-job', v: 1, runKey: 'junk', chips: [{ chipIndex: -3 }] } as never));
      await js.publish(n.jobSubject('junk', 2), encodeMessage({ type: 'tile-job', v: 99 } as never));
      const window = { x: 0, y: 0, width: 100000, height: 100000 };
      await js.publish(n.jobSubject('junk', 3), encodeMessage({ type: 'tile-job', v: 1, runKey: 'junk', chips: [{ chipIndex: 0, read: window, write: { x: 0, y: 0, width: 1, height: 1 } }], source: { kind: 'stacked', href: SAMPLE }, models: { cloud: 'a', shadow: 'b' }, thresholds: { cloud: 0.3, shadow: 0.2 }, harmonize: false, withProbabilities: false }));
      // Over the stream's size limit: the server refuses it at the door.
      await expect(js.publish(n.jobSubject('junk', 4), new Uint8Array(7.5 * 1024 * 1024))).rejects.toThrow();
      await nc.drain();
      const out = path.join(tmp, 'after-junk.tif');
      const r = await runCli(coordinatorArgs(prefix, out));
      expect(r.code, r.stderr).toBe(0);
      expect((await readMask(out)).equals(reference)).toBe(true);
      expect(workers[0].child.exitCode).toBe(null);
    } finally {
      await stopWorkers(workers);
    }
    const log = workers[0].stderr();
    expect(log.match(/rejected a malformed message/g)?.length).toBe(4);
    expect(log).toMatch(/larger than 4096x4096/);
  });

  test('a job naming a path outside the allowed roots is rejected', async () => {
    const prefix = freshPrefix();
    const jail = mkdtempSync(path.join(tmp, 'jail-'));
    const worker = spawnCli(['worker', '--nats', nats.url, '--nats-prefix', prefix, '--threads', '1', '--allow-root', jail, '--ack-wait-ms', '3000']);
    try {
      const out = path.join(tmp, 'forbidden.tif');
      const r = await runCli(coordinatorArgs(prefix, out));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/FORBIDDEN_SOURCE: source .*s2-l2a-29RKH.* is outside this worker's allowed roots/);
      expect(existsSync(out)).toBe(false);
    } finally {
      await stopWorkers([worker]);
    }
  });
});
