/**
 * One contract, both scene queues: the in-process one and JetStream's on a real nats-server.
 * Submission is idempotent per scene identity + parameters, records take conditional writes, the
 * coordinator service turns runs into exactly one finished record per scene.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { serveScenes } from '../coordinator/scene-service.ts';
import type { SceneReport } from '../coordinator/scene-run.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { DEFAULT_PARAMS } from '../shared/params.ts';
import { archiveStatus, countScenes, decodeSceneJob, encodeSceneJob, type ArchiveRecord, type SceneJob } from '../shared/scene-jobs.ts';
import type { SceneQueue } from '../shared/transport.ts';
import { EmbeddedSceneQueue } from '../transport/embedded-scenes.ts';
import { ensureSceneTopology, JetStreamSceneQueue } from '../transport/jetstream-scenes.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

let nats: NatsServer;
const connections: NatsConnection[] = [];
let prefixes = 0;

beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  for (const nc of connections) await nc.drain().catch(() => {});
  await nats?.close();
});

const job = (archive: string, i: number, force = false): SceneJob => ({
  type: 'scene-job',
  v: 1,
  archive,
  key: `scene${i}-abcdef`,
  input: `/data/scene${i}`,
  productMask: 'scl',
  name: `scene${i}`,
  out: `/out/scene${i}.tif`,
  params: DEFAULT_PARAMS,
  force,
});

const archiveRecord = (name: string): ArchiveRecord => ({ name, params: DEFAULT_PARAMS, outDir: '/out', source: 'test', createdAt: 1, submittedAt: 1 });

const report = (j: SceneJob): SceneReport => ({ input: j.input, output: j.out, runKey: j.key, paramHash: 'h', width: 10, height: 10, chips: 9, resumedChips: 0, skippedChips: 0, inferenceDomain: 'whole chips', seconds: 0.01, cloudFraction: 0.5, productMask: { source: 'none', href: null } });

const implementations: [string, () => Promise<SceneQueue>][] = [
  ['in-process', async () => new EmbeddedSceneQueue({ maxDeliveries: 2 })],
  [
    'JetStream',
    async () => {
      const nc = await connect({ servers: nats.url });
      connections.push(nc);
      // An ack wait well above a scene here (a few ms): only naks redeliver.
      const options = { prefix: `q${++prefixes}`, ackWaitMs: 10_000, maxDeliveries: 2 };
      await ensureSceneTopology(nc, options);
      return new JetStreamSceneQueue(nc, options);
    },
  ],
];

test('scene jobs round-trip and malformed ones are refused', () => {
  const j = job('a1', 1);
  expect(decodeSceneJob(encodeSceneJob(j))).toEqual(j);
  expect(() => decodeSceneJob(new TextEncoder().encode('{"type":"scene-job","v":2}'))).toThrow(/unsupported version 2/);
  expect(() => decodeSceneJob(encodeSceneJob({ ...j, archive: 'a b' }))).toThrow(/archive must match/);
  expect(() => decodeSceneJob(encodeSceneJob({ ...j, params: { ...DEFAULT_PARAMS, cloud_thr: 7 } }))).toThrow(/params: .*cloud_thr/);
});

describe.each(implementations)('%s scene queue', (_name, open) => {
  test('submitting again queues nothing queued or done; failed scenes and --force are queued again', async () => {
    const q = await open();
    const jobs = [1, 2, 3].map((i) => job('arch', i));
    expect((await q.submit(archiveRecord('arch'), jobs)).queued.length).toBe(3);
    const again = await q.submit(archiveRecord('arch'), jobs);
    expect(again.queued.length).toBe(0);
    expect(again.notQueued.map((r) => r.state)).toEqual(['queued', 'queued', 'queued']);
    expect(await q.lag()).toBe(3);
    // A stale revision loses; the current one wins.
    const stored = (await q.getRecord('arch', jobs[0].key))!;
    expect(await q.updateRecord({ ...stored.record, state: 'done' }, stored.revision)).not.toBeNull();
    expect(await q.updateRecord({ ...stored.record, state: 'failed' }, stored.revision)).toBeNull();
    expect(await q.updateRecord({ ...stored.record }, 0)).toBeNull();
    const s2 = (await q.getRecord('arch', jobs[1].key))!;
    await q.updateRecord({ ...s2.record, state: 'failed', reason: 'x' }, s2.revision);
    const third = await q.submit(archiveRecord('arch'), jobs);
    expect(third.queued.map((r) => r.key)).toEqual([jobs[1].key]);
    const forced = await q.submit(archiveRecord('arch'), jobs.map((j) => ({ ...j, force: true })));
    expect(forced.queued.length).toBe(3);
    expect(await q.getArchive('arch')).toMatchObject({ name: 'arch', outDir: '/out' });
    expect(await q.archives()).toContain('arch');
    q.stop();
  });

  test('the coordinator service: one finished record per scene, retryable failures retried, permanent ones failed with the reason', async () => {
    const q = await open();
    const jobs = [1, 2, 3, 4].map((i) => job('svc', i));
    await q.submit(archiveRecord('svc'), jobs);
    const runs = new Map<string, number>();
    const service = serveScenes(q, {
      coordinator: 'c1',
      scenesInFlight: 2,
      alreadyDone: async (j) => j.name === 'scene4',
      run: async (j) => {
        const n = (runs.get(j.key) ?? 0) + 1;
        runs.set(j.key, n);
        if (j.name === 'scene2' && n === 1) throw new CloudMaskError('TRANSIENT_IO', 'flaky read');
        if (j.name === 'scene3') throw new CloudMaskError('BAD_INPUT', 'not a raster');
        return report(j);
      },
    });
    for (const deadline = Date.now() + 40_000; Date.now() < deadline; ) {
      const c = countScenes(await q.records('svc'));
      if (c.done + c.failed + c.skipped === 4) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    service.stop();
    await service.done;
    const records = await q.records('svc');
    expect(countScenes(records)).toMatchObject({ done: 2, failed: 1, skipped: 1, queued: 0, running: 0, total: 4 });
    const byName = Object.fromEntries(records.map((r) => [r.name, r]));
    expect(byName.scene2).toMatchObject({ state: 'done', coordinator: 'c1', chips: 9 });
    // Run twice: failed once, then done. (A loaded server can count one more delivery: a message
    // handed to a pull request that had just expired comes back after the ack wait.)
    expect(runs.get(jobs[1].key)).toBe(2);
    expect(byName.scene2.attempts).toBeGreaterThanOrEqual(2);
    expect(byName.scene3).toMatchObject({ state: 'failed', reason: 'BAD_INPUT: not a raster', attempts: 1 });
    expect(runs.get(jobs[3].key)).toBeUndefined();
    const status = archiveStatus('svc', records, await q.coordinators(), await q.lag());
    expect(status.failedScenes).toEqual([{ name: 'scene3', input: '/data/scene3', reason: 'BAD_INPUT: not a raster' }]);
    expect(status.coordinators.c1).toEqual({ done: 2, failed: 1, running: 0 });
    expect(status.queueLag).toBe(0);
    // Stopped cleanly: no longer alive.
    expect(await q.coordinators()).toEqual([]);
    // Everything finished: a new submission queues nothing but the failed scene.
    expect((await q.submit(archiveRecord('svc'), jobs)).queued.map((r) => r.name)).toEqual(['scene3']);
  }, 120_000);

  test('handBack (a second SIGTERM): the scene in flight goes back to the queue at once and another coordinator finishes it', async () => {
    const q = await open();
    await q.submit(archiveRecord('hb'), [job('hb', 1)]);
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const first = serveScenes(q, { coordinator: 'first', scenesInFlight: 1, alreadyDone: async () => false, run: () => (started(), new Promise<SceneReport>(() => {})) });
    await running;
    expect((await q.records('hb'))[0]).toMatchObject({ state: 'running', coordinator: 'first' });
    await first.handBack();
    expect((await q.records('hb'))[0]).toMatchObject({ state: 'queued', coordinator: null, reason: 'handed back by first' });
    const second = serveScenes(q, { coordinator: 'second', scenesInFlight: 1, alreadyDone: async () => false, run: async (j) => report(j) });
    for (const deadline = Date.now() + 30_000; Date.now() < deadline && (await q.records('hb'))[0]!.state !== 'done'; ) await new Promise((r) => setTimeout(r, 200));
    second.stop();
    await second.done;
    expect((await q.records('hb'))[0]).toMatchObject({ state: 'done', coordinator: 'second' });
    expect((await q.records('hb'))[0]!.attempts).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
