/**
 * Workers and coordinators against a real nats-server when things are wrong: a broken worker
 * exits at start with one line; a stopping worker exits in bounded time even with its server
 * gone; a coordinator without workers says so; credentials come from the environment; a link
 * out of an allowed root is refused; inline-pixel jobs are not read-checked.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { resolveSource } from '../raster/source.ts';
import { openScene } from '../raster/scene-reader.ts';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL } from '../shared/manifest.ts';
import type { TileJob, TileOutcome } from '../shared/messages.ts';
import { sceneLayout, chipAt } from '../shared/tiling.ts';
import { EmbeddedTransport } from '../transport/embedded.ts';
import { AllowedSources, assertAllowed, resolveAllowedRoots } from '../worker/allow.ts';
import { defaultModelsDir, inspectModel } from '../worker/models.ts';
import { runWorkerNode } from '../worker/node.ts';
import { ChipPool } from '../worker/pool.ts';
import { runCli, SAMPLE, spawnCli } from './helpers/cli.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

let tmp: string;
let nats: NatsServer;
let authed: NatsServer;
const lfs = 'version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 52000000\n';

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-harden-w-'));
  nats = await startNatsServer();
  authed = await startNatsServer('authorization { user: icm, password: s3cret }');
});
afterAll(async () => {
  await nats?.close();
  await authed?.close();
  rmSync(tmp, { recursive: true, force: true });
});

function oneLine(stderr: string, code: string): string {
  const last = stderr.trim().split('\n').at(-1)!;
  expect(last).toMatch(new RegExp(`^improve-cloud-mask: error \\[${code}\\]: `));
  return last;
}

describe('a broken worker exits before its first pull', () => {
  test('a Git LFS pointer as its model: BAD_MODEL, exit 4, never pulling', async () => {
    const dir = path.join(tmp, 'models-lfs');
    mkdirSync(dir);
    for (const f of [DEFAULT_SHADOW_MODEL, `${DEFAULT_SHADOW_MODEL}.json`, `${DEFAULT_CLOUD_MODEL}.json`]) copyFileSync(path.join(defaultModelsDir(), f), path.join(dir, f));
    writeFileSync(path.join(dir, DEFAULT_CLOUD_MODEL), lfs);
    const r = await runCli(['worker', '--nats', nats.url, '--threads', '1', '--models-dir', dir]);
    expect(r.code, r.stderr).toBe(4);
    expect(oneLine(r.stderr, 'BAD_MODEL')).toMatch(/Git LFS pointer/);
    expect(r.stderr).not.toMatch(/pulling from/);
  });

  test('a mistyped --allow-root: BAD_OPTION, exit 2', async () => {
    const r = await runCli(['worker', '--nats', nats.url, '--threads', '1', '--allow-root', path.join(tmp, 'no-such-archive')]);
    expect(r.code, r.stderr).toBe(2);
    expect(oneLine(r.stderr, 'BAD_OPTION')).toMatch(/--allow-root .*no-such-archive does not exist/);
  });

  test('--nats-prefix a.b on a worker: BAD_OPTION, and the process ends', async () => {
    const r = await runCli(['worker', '--nats', nats.url, '--threads', '1', '--nats-prefix', 'a.b']);
    expect(r.code, r.stderr).toBe(2);
    expect(oneLine(r.stderr, 'BAD_OPTION')).toMatch(/--nats-prefix/);
  });

  test('a shape the built-in manifest does not describe: the hint names no manifest file that does not exist', async () => {
    const dir = path.join(tmp, 'models-builtin');
    mkdirSync(dir);
    // Our one-channel cloud model under a FarmVibes cloud model name (built-in manifest: two channels, softmax).
    copyFileSync(path.join(defaultModelsDir(), DEFAULT_CLOUD_MODEL), path.join(dir, 'cloud_model1_cpu.onnx'));
    const err = await inspectModel('cloud_model1_cpu.onnx', 'cloud', dir).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/output has 1 channels.*built-in manifest for cloud_model1_cpu\.onnx.*describe it in cloud_model1_cpu\.onnx\.json/);
    expect(err?.message).not.toMatch(/fix or remove/);
  });
});

describe('shutdown and silence', () => {
  test('SIGTERM after the server was stopped: the worker exits on its own, in bounded time', async () => {
    const server = await startNatsServer();
    const worker = spawnCli(['worker', '--nats', server.url, '--threads', '1', '--ack-wait-ms', '2000']);
    try {
      await worker.waitFor(/pulling from/, 60_000);
      await server.stop();
      await new Promise((r) => setTimeout(r, 500));
      worker.child.kill('SIGTERM');
      const exited = await Promise.race([worker.exited, new Promise<null>((r) => setTimeout(() => r(null), 30_000))]);
      expect(exited, `still alive after SIGTERM: ${worker.stderr()}`).not.toBeNull();
      expect(exited!.code).toBe(0);
      expect(exited!.stderr).toMatch(/stopped after 0 chips/);
    } finally {
      worker.child.kill('SIGKILL');
      await server.close();
    }
  });

  test('a coordinator with no worker says so, with what the consumer sees', async () => {
    const coord = spawnCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', path.join(tmp, 'alone.tif'), '--nats', nats.url, '--ack-wait-ms', '1000', '--nats-prefix', 'alone', '--quiet']);
    try {
      const line = await coord.waitFor(/warning: no worker has taken a job[^\n]*/, 60_000);
      expect(line).toMatch(/\d+ jobs waiting on consumer alone-workers-0\.\.7, which sees 0 worker pull requests/);
    } finally {
      coord.child.kill('SIGKILL');
      await coord.exited;
    }
  });

  test('NATS credentials from the environment (NATS_USER, NATS_PASSWORD), as the nats CLI names them', async () => {
    const env = { NATS_URL: authed.url, NATS_USER: 'icm', NATS_PASSWORD: 's3cret' };
    const worker = spawnCli(['worker', '--threads', '1', '--allow-root', path.dirname(SAMPLE)], { env });
    try {
      await worker.waitFor(/pulling from/, 60_000);
      const out = path.join(tmp, 'env-auth.tif');
      const r = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', out, '--quiet'], { env });
      expect(r.code, r.stderr).toBe(0);
      const wrong = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', path.join(tmp, 'env-denied.tif'), '--quiet'], { env: { ...env, NATS_PASSWORD: 'nope' } });
      expect(oneLine(wrong.stderr, 'BAD_OPTION')).toMatch(/cannot connect to NATS/);
    } finally {
      worker.child.kill('SIGTERM');
      expect((await worker.exited).code).toBe(0);
    }
  });
});

describe('a bounded drain', () => {
  test('chips still running when the drain bound passes are handed back, named, and publish nothing', async () => {
    const reader = await openScene(await resolveSource(SAMPLE));
    const layout = sceneLayout(reader.geo.width, reader.geo.height);
    const source = reader.source;
    await reader.close();
    const transport = new EmbeddedTransport();
    const pool = new ChipPool({ threads: 1, modelsDir: defaultModelsDir(), worker: 'drain-test' });
    const published: number[] = [];
    await transport.subscribe('drain-test', (o) => published.push(o.chipIndex));
    let firstDone!: () => void;
    const first = new Promise<void>((r) => (firstDone = r));
    // Four jobs in flight on one thread: when the first is done, three are still unfinished.
    const node = runWorkerNode(transport, pool, { worker: 'drain-test', allowRoots: await resolveAllowedRoots([path.dirname(SAMPLE)]), maxInFlight: 4, drainMs: 1, onEvent: (e) => e.type === 'job-done' && firstDone() });
    try {
      for (let i = 0; i < 4; i++) {
        const chip = chipAt(layout, i);
        await transport.submit({ type: 'tile-job', v: 1, runKey: 'drain-test', chips: [{ chipIndex: i, read: chip.read, write: chip.write }], source, models: { cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL }, thresholds: { cloud: 0.3, shadow: 0.2 }, harmonize: false, withProbabilities: false });
      }
      await first;
      transport.stop();
      const stopped = await node;
      expect(stopped.handedBack.length).toBeGreaterThan(0);
      await pool.close();
      await new Promise((r) => setTimeout(r, 200));
      // What was handed back is queued again for another worker, and none of it was published.
      expect(await transport.pending()).toBe(stopped.handedBack.length);
      for (const c of stopped.handedBack) expect(published).not.toContain(c);
      expect(published.length + stopped.handedBack.length).toBe(4);
    } finally {
      transport.stop();
      await pool.close().catch(() => {});
    }
  });
});

/** An allowed root and, beside it, a folder outside it holding secret.tif. */
function rootAndOutside(rootName: string, outsideName: string): { root: string; outside: string } {
  const root = path.join(tmp, rootName);
  const outside = path.join(tmp, outsideName);
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(path.join(outside, 'secret.tif'), 'not yours');
  return { root, outside };
}

describe('what a worker may read', () => {
  test('a symlink inside an allowed root that points outside it is refused', async () => {
    const { root, outside } = rootAndOutside('root', 'outside');
    symlinkSync(path.join(outside, 'secret.tif'), path.join(root, 'scene.tif'));
    symlinkSync(outside, path.join(root, 'linked-dir'));
    writeFileSync(path.join(root, 'fine.tif'), 'yours');
    const roots = await resolveAllowedRoots([root]);
    await expect(assertAllowed({ kind: 'stacked', href: path.join(root, 'fine.tif') }, roots)).resolves.toBeUndefined();
    await expect(assertAllowed({ kind: 'stacked', href: path.join(root, 'scene.tif') }, roots)).rejects.toThrow(/FORBIDDEN|outside.*resolves to .*outside[/\\]secret\.tif/);
    await expect(assertAllowed({ kind: 'stacked', href: path.join(root, 'linked-dir', 'secret.tif') }, roots)).rejects.toMatchObject({ code: 'FORBIDDEN_SOURCE' });
    await expect(assertAllowed({ kind: 'stacked', href: path.join(root, '..', 'outside', 'secret.tif') }, roots)).rejects.toMatchObject({ code: 'FORBIDDEN_SOURCE' });
  });

  test("a worker's remembered checks: a refused source is checked again each time, a passed one is not", async () => {
    const { root, outside } = rootAndOutside('memo-root', 'memo-outside');
    writeFileSync(path.join(root, 'fine.tif'), 'yours');
    const link = path.join(root, 'scene.tif');
    symlinkSync(path.join(outside, 'secret.tif'), link);
    const allowed = new AllowedSources(await resolveAllowedRoots([root]));
    await expect(allowed.assert({ kind: 'stacked', href: link })).rejects.toMatchObject({ code: 'FORBIDDEN_SOURCE' });
    await expect(allowed.assert({ kind: 'stacked', href: link })).rejects.toMatchObject({ code: 'FORBIDDEN_SOURCE' });
    // The link mended: the refusal was not remembered.
    rmSync(link);
    symlinkSync(path.join(root, 'fine.tif'), link);
    await expect(allowed.assert({ kind: 'stacked', href: link })).resolves.toBeUndefined();
    // Passed, it is not resolved again for a while (every job of a scene names the same files).
    rmSync(link);
    await expect(allowed.assert({ kind: 'stacked', href: link })).resolves.toBeUndefined();
    // Under the filesystem root (the embedded run) every file is allowed, links and all.
    symlinkSync(path.join(outside, 'secret.tif'), link);
    await expect(assertAllowed({ kind: 'stacked', href: link }, ['/'])).resolves.toBeUndefined();
    await expect(assertAllowed({ kind: 'stacked', href: link }, await resolveAllowedRoots([root]))).rejects.toMatchObject({ code: 'FORBIDDEN_SOURCE' });
  });

  test('an --inline-pixels job is not subject to the read check: the pixels are in the job', async () => {
    const reader = await openScene(await resolveSource(SAMPLE));
    const layout = sceneLayout(reader.geo.width, reader.geo.height);
    const chip = chipAt(layout, 0);
    const pixels = await reader.readWindow(chip.read);
    const source = reader.source;
    await reader.close();
    const transport = new EmbeddedTransport();
    const pool = new ChipPool({ threads: 1, modelsDir: defaultModelsDir(), worker: 'inline-test' });
    const outcomes: TileOutcome[] = [];
    const job: TileJob = {
      type: 'tile-job', v: 1, runKey: 'inline-test', chips: [{ chipIndex: 0, read: chip.read, write: chip.write }], source,
      models: { cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL }, thresholds: { cloud: 0.3, shadow: 0.2 }, harmonize: false, withProbabilities: false, pixels,
    };
    const got = new Promise<void>((resolve) => void transport.subscribe('inline-test', (o) => (outcomes.push(o), resolve())));
    const emptyRoot = mkdtempSync(path.join(tmp, 'empty-root-'));
    const node = runWorkerNode(transport, pool, { worker: 'inline-test', allowRoots: await resolveAllowedRoots([emptyRoot]) });
    try {
      await transport.submit(job);
      await got;
      expect(outcomes[0]?.type, JSON.stringify(outcomes[0])).toBe('tile-result');
      // The same job naming its source without pixels is refused: the check still stands.
      const refused = new Promise<TileOutcome>((resolve) => void transport.subscribe('inline-test', resolve));
      await transport.submit({ ...job, pixels: undefined });
      const failure = await refused;
      expect(failure.type === 'tile-failure' && failure.error.code).toBe('FORBIDDEN_SOURCE');
    } finally {
      transport.stop();
      await node;
      await pool.close();
    }
  });
});
