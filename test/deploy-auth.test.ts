/**
 * The shipped NATS setup is closed by default: deploy/nats.conf demands an account from the
 * environment and a stated store, refuses to start without them, and refuses clients without
 * the account; compose and Kubernetes hand the account to every process as environment
 * variables from a secret, never as flags, and publish the monitoring port nowhere public.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { connectNats } from '../transport/connect.ts';
import { REPO_ROOT } from './helpers/dashboard.ts';
import { freePort } from './helpers/net.ts';

const read = (rel: string): string => readFileSync(path.join(REPO_ROOT, rel), 'utf8');
const CONF = path.join(REPO_ROOT, 'deploy', 'nats.conf');
const SECRET_FLAGS = ['--nats-pass', '--nats-token', '--nats-user', '--nats-creds', '--nats-nkey'];

type Env = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
type Container = { name: string; args?: string[]; env?: Env[] };
const k8sContainers = (file: string): Container[] =>
  parseAllDocuments(read(file))
    .map((d) => d.toJS() as { kind: string; spec?: { template?: { spec: { containers: Container[] } }; jobTemplate?: unknown } })
    .flatMap((d) => d.spec?.template?.spec.containers ?? []);

describe('deploy/nats.conf', () => {
  let tmp: string;
  beforeAll(() => (tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-conf-'))));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('takes the account and the store from the environment', () => {
    const conf = read('deploy/nats.conf');
    expect(conf).toMatch(/authorization\s*{\s*user:\s*\$NATS_USER\s+password:\s*\$NATS_PASSWORD\s*}/);
    expect(conf).toMatch(/store_dir:\s*\$NATS_STORE_DIR/);
  });

  it.skipIf(!existsSync('/usr/sbin/nats-server'))('refuses to start without the account, rather than run open', () => {
    const r = spawnSync('/usr/sbin/nats-server', ['-t', '-c', CONF], { env: { PATH: process.env.PATH, NATS_STORE_DIR: tmp }, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr + r.stdout).toMatch(/NATS_USER/);
  });

  it.skipIf(!existsSync('/usr/sbin/nats-server'))('refuses clients without the account and keeps its store where NATS_STORE_DIR says', async () => {
    const port = await freePort();
    const store = path.join(tmp, 'store');
    const env = { PATH: process.env.PATH, NATS_USER: 'icm', NATS_PASSWORD: 'Secret42', NATS_STORE_DIR: store };
    // -p and -m override the config's ports, so the test does not need 4222 and 8222 free.
    const server = spawn('/usr/sbin/nats-server', ['-c', CONF, '-p', String(port), '-m', String(await freePort())], { env, stdio: 'ignore' });
    try {
      const url = `nats://127.0.0.1:${port}`;
      let nc = null;
      for (let i = 0; i < 100 && !nc; i++) {
        nc = await connectNats({ servers: url, user: 'icm', pass: 'Secret42' }).catch(() => null);
        if (!nc) await new Promise((r) => setTimeout(r, 100));
      }
      expect(nc, 'the account connects').not.toBeNull();
      await nc!.close();
      await expect(connectNats({ servers: url })).rejects.toMatchObject({ code: 'BAD_OPTION' });
      await expect(connectNats({ servers: url, user: 'icm', pass: 'wrong' })).rejects.toMatchObject({ code: 'BAD_OPTION' });
      expect(existsSync(path.join(store, 'jetstream'))).toBe(true);
    } finally {
      server.kill('SIGKILL');
    }
  });
});

describe('compose and Kubernetes hand the account over as environment from a secret', () => {
  const compose = parse(read('deploy/docker-compose.yml')) as { services: Record<string, { command?: string[]; environment?: Record<string, string>; ports?: string[] }> };

  it('compose: every process gets NATS_USER/NATS_PASSWORD, none gets a secret flag, the password is required', () => {
    for (const name of ['nats', 'coordinator', 'worker']) {
      const env = compose.services[name]!.environment ?? {};
      expect(env.NATS_USER, name).toBeDefined();
      expect(env.NATS_PASSWORD, name).toMatch(/^\$\{NATS_PASSWORD:\?/);
      for (const flag of SECRET_FLAGS) expect((compose.services[name]!.command ?? []).map(String)).not.toContain(flag);
    }
  });

  it('compose: monitoring only on the host loopback, the client port on loopback unless asked', () => {
    const ports = compose.services.nats!.ports!;
    expect(ports).toContain('127.0.0.1:8222:8222');
    expect(ports).toContain('${NATS_PUBLISH_ADDR:-127.0.0.1}:4222:4222');
  });

  it('Kubernetes: nats, the workers and the batch Job read the account from the Secret icm-nats-auth', () => {
    const files = ['deploy/k8s/nats.yaml', 'deploy/k8s/worker.yaml', 'deploy/k8s/coordinator-job.yaml'];
    const containers = files.flatMap((f) => k8sContainers(f).map((c) => ({ f, c })));
    expect(containers.length).toBe(3);
    for (const { f, c } of containers) {
      for (const key of ['NATS_USER', 'NATS_PASSWORD']) {
        expect(c.env?.find((e) => e.name === key)?.valueFrom?.secretKeyRef, `${f} ${key}`).toEqual({ name: 'icm-nats-auth', key });
      }
      for (const flag of SECRET_FLAGS) expect(c.args ?? [], f).not.toContain(flag);
    }
  });
});
