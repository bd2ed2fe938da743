/**
 * Lanes on a real nats-server, through two JetStream worker transports on one connection: each
 * takes the jobs of the lanes it owns; one whose lanes are empty takes another's only when a
 * thread would idle; a job on a lane whose owner is gone or busy is still delivered. (The
 * delivery semantics themselves are the contract's, test/transport-contract.test.ts.)
 */
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { TileJob } from '../shared/messages.ts';
import { JOB_LANES, names } from '../shared/subjects.ts';
import type { JobDelivery } from '../shared/transport.ts';
import { ensureTopology, JetStreamCoordinatorTransport } from '../transport/jetstream.ts';
import { JetStreamWorkerTransport } from '../transport/jetstream-worker.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

const ACK_WAIT_MS = 1500;
let server: NatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});
afterAll(async () => {
  await nc?.close();
  await server?.close();
});

function job(chipIndex: number): TileJob {
  const read = { x: chipIndex * 4, y: 0, width: 4, height: 2 };
  return {
    type: 'tile-job', v: 1, runKey: 'lanes', chips: [{ chipIndex, read, write: read }],
    source: { kind: 'stacked', href: '/nowhere/scene.tif' },
    models: { cloud: 'c.onnx', shadow: 's.onnx' }, thresholds: { cloud: 0.3, shadow: 0.2 }, harmonize: false, withProbabilities: false,
  };
}

/** Collects a worker's deliveries (chip index = the lane it was submitted on) into `got`. */
function collect(w: JetStreamWorkerTransport, maxInFlight: number, got: JobDelivery[]): Promise<void> {
  return (async () => {
    for await (const d of w.jobs(maxInFlight)) got.push(d);
  })();
}

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('two workers take their own lanes; a busy owner\'s job goes to the idle one; a gone one\'s lanes are taken over', async () => {
  const opts = { prefix: 'lanes1', ackWaitMs: ACK_WAIT_MS };
  await ensureTopology(nc, opts);
  const views: Record<string, string> = {};
  const make = (id: string): JetStreamWorkerTransport => new JetStreamWorkerTransport(nc, { ...opts, worker: id, onLanes: (owned, members) => (views[id] = `${owned.join(',')}/${members}`) });
  const a = make('a');
  const b = make('b');
  const gotA: JobDelivery[] = [];
  const gotB: JobDelivery[] = [];
  const loops = [collect(a, 8, gotA), collect(b, 1, gotB)];
  await until('both workers see two members', () => views.a?.endsWith('/2') === true && views.b?.endsWith('/2') === true);
  expect([views.a, views.b]).toEqual(['0,1,2,3/2', '4,5,6,7/2']);

  // One job per lane, the chip index naming the lane: each worker gets its own four.
  const coordinator = new JetStreamCoordinatorTransport(nc, opts);
  for (let lane = 0; lane < JOB_LANES; lane++) await coordinator.submit(job(lane), lane);
  await until('a has its four jobs and b one', () => gotA.length === 4 && gotB.length === 1);
  expect(gotA.map((d) => d.job.chips[0]!.chipIndex).sort()).toEqual([0, 1, 2, 3]);
  expect([4, 5, 6, 7]).toContain(gotB[0]!.job.chips[0]!.chipIndex);
  // b holds one job (its only slot): a, with nothing left on its lanes, helps after waiting about a job's time.
  for (const d of gotA) await d.ack();
  await until('a helped with b\'s three other jobs', () => gotA.length === 7, 20_000);
  expect(gotA.slice(4).map((d) => d.job.chips[0]!.chipIndex).every((c) => c >= 4)).toBe(true);
  expect(a.laneStats).toEqual({ own: 4, helped: 3 });
  for (const d of [...gotA, ...gotB]) await d.ack();

  // b stops (SIGTERM's path): its key goes at once, a owns every lane and takes a lane-6 job as its own.
  b.stop();
  await until('a owns all lanes', () => views.a === '0,1,2,3,4,5,6,7/1');
  await coordinator.submit(job(6), 6);
  await until('a has the lane-6 job', () => gotA.length === 8);
  expect(a.laneStats).toEqual({ own: 5, helped: 3 });
  await gotA[7]!.ack();
  a.stop();
  await Promise.all(loops);
}, 60_000);

test('upgrading: the single consumer of earlier versions is removed when empty; holding jobs, it stops the start with one line', async () => {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  for (const [prefix, jobs] of [['old0', 0], ['old1', 1]] as const) {
    const n = names(prefix);
    // What an earlier version created: the stream and one unfiltered consumer.
    await jsm.streams.add({ name: n.jobsStream, subjects: [n.jobsFilter], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
    await jsm.consumers.add(n.jobsStream, { durable_name: n.workersConsumer, ack_policy: AckPolicy.Explicit });
    for (let i = 0; i < jobs; i++) await js.publish(`${prefix}.jobs.oldrun.${i}`, new Uint8Array([1]));
    if (jobs === 0) {
      await ensureTopology(nc, { prefix });
      const consumers = (await jsm.consumers.list(n.jobsStream).next()).map((c) => c.name).sort();
      expect(consumers).toEqual(Array.from({ length: JOB_LANES }, (_, l) => n.laneConsumer(l)).sort());
    } else {
      await expect(ensureTopology(nc, { prefix })).rejects.toThrow(/consumer old1-workers of an earlier version still holds 1 jobs/);
      expect((await jsm.consumers.info(n.jobsStream, n.workersConsumer)).num_pending).toBe(1);
    }
  }
});
