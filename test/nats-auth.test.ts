/** NATS connection options against a real nats-server that requires a user and password. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { runCli, SAMPLE, spawnCli } from './helpers/cli.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

let nats: NatsServer;
let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-auth-'));
  nats = await startNatsServer('authorization { user: icm, password: s3cret }');
});
afterAll(async () => {
  await nats?.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('with --nats-user/--nats-pass a run completes; without, a clear one-line error', async () => {
  const auth = ['--nats-user', 'icm', '--nats-pass', 's3cret'];
  const worker = spawnCli(['worker', '--nats', nats.url, ...auth, '--threads', '1', '--allow-root', path.dirname(SAMPLE)]);
  try {
    const out = path.join(tmp, 'mask.tif');
    const r = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', out, '--nats', nats.url, ...auth, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    const denied = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', path.join(tmp, 'denied.tif'), '--nats', nats.url, '--quiet']);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr.trim()).toMatch(/^improve-cloud-mask: error \[BAD_OPTION\]: cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: .*AUTHORIZATION/i);
  } finally {
    worker.child.kill('SIGTERM');
    expect((await worker.exited).code).toBe(0);
  }
});
