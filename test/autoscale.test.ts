/**
 * Does autoscaling reach its maximum on a real archive's backlog? A real nats-server holds an
 * archive of 600 full-tile scenes in the scene queue with 2 of them running on a real coordinator
 * service; a real Prometheus scrapes the coordinator's metrics. The worker ScaledObject's own
 * Prometheus query and threshold, and the coordinator ScaledObject's JetStream lag and
 * lagThreshold, go through KEDA's formula (desired = ceil(metric / threshold), capped at
 * maxReplicaCount): both reach their maximum. One full tile alone asks for the number
 * docs/deploy.md states.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { createArchiveMetrics } from '../coordinator/archive-metrics.ts';
import { createCoordinatorMetrics } from '../coordinator/metrics.ts';
import { serveScenes, type SceneService } from '../coordinator/scene-service.ts';
import type { SceneReport } from '../coordinator/scene-run.ts';
import { DEFAULT_PARAMS } from '../shared/params.ts';
import type { SceneJob } from '../shared/scene-jobs.ts';
import { defaultMetricLabels } from '../shared/metric-names.ts';
import { names } from '../shared/subjects.ts';
import { sceneLayout } from '../shared/tiling.ts';
import { ensureSceneTopology, JetStreamSceneQueue } from '../transport/jetstream-scenes.ts';
import { REPO } from './helpers/cli.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';
import { prometheusAvailable, startPrometheus, type PrometheusServer } from './helpers/prometheus.ts';

interface ScaledObject {
  metadata: { name: string };
  spec: { maxReplicaCount: number; minReplicaCount: number; triggers: { type: string; metadata: Record<string, string> }[] };
}
const scaledObjects = ['deploy/k8s/keda-scaledobject.yaml', 'deploy/k8s/coordinator.yaml'].flatMap((f) =>
  parseAllDocuments(readFileSync(path.join(REPO, f), 'utf8'))
    .map((d) => d.toJS() as ScaledObject & { kind: string })
    .filter((d) => d.kind === 'ScaledObject'),
);
const scaledObject = (name: string): ScaledObject => scaledObjects.find((s) => s.metadata.name === name)!;
const trigger = (so: ScaledObject, type: string): Record<string, string> => so.spec.triggers.find((t) => t.type === type)!.metadata;
/** KEDA (through the HPA, AverageValue targets): replicas = ceil(metric / target), within min..max. */
const kedaReplicas = (so: ScaledObject, metric: number, threshold: number): number => Math.min(so.spec.maxReplicaCount, Math.max(so.spec.minReplicaCount, Math.ceil(metric / threshold)));

const FULL_TILE_CHIPS = sceneLayout(10980, 10980).count;
const SCENES = 600;

let nats: NatsServer;
let nc: NatsConnection;
let prom: PrometheusServer | null = null;
let server: Server | null = null;
let service: SceneService | null = null;
let release: () => void = () => {};

const job = (i: number): SceneJob => ({ type: 'scene-job', v: 1, archive: 'year2020', key: `t${i}-0123456789abcdef`, input: `/data/tile${i}`, productMask: 'scl', name: `tile${i}`, out: `/data/out/tile${i}.tif`, params: DEFAULT_PARAMS, force: false });

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
});
afterAll(async () => {
  release();
  service?.stop();
  await service?.done;
  await prom?.close();
  await new Promise<void>((r) => (server ? (server.closeAllConnections(), server.close(() => r())) : r()));
  await nc?.drain();
  await nats?.close();
});

test('the full-tile arithmetic of docs/deploy.md', () => {
  const worker = scaledObject('icm-worker');
  const threshold = Number(trigger(worker, 'prometheus').threshold);
  expect(FULL_TILE_CHIPS).toBe(841);
  // One full tile running, nothing queued: 841 chips.
  expect(kedaReplicas(worker, FULL_TILE_CHIPS, threshold)).toBe(9);
  // The chips count is the worker's only trigger (its jobs wait in one consumer per lane).
  expect(worker.spec.triggers.map((t) => t.type)).toEqual(['prometheus']);
});

describe.skipIf(!prometheusAvailable())('on a real archive backlog', () => {
  test('600 queued full tiles: workers and coordinators both scale to their maximum', async () => {
    const coordinatorSo = scaledObject('icm-coordinator');
    const workerSo = scaledObject('icm-worker');
    const js = trigger(coordinatorSo, 'nats-jetstream');
    // The ScaledObject names the stream and consumer the code creates (default prefix).
    const n = names();
    expect([js.stream, js.consumer]).toEqual([n.scenesStream, n.coordinatorsConsumer]);
    await ensureSceneTopology(nc, { ackWaitMs: 60_000 });
    const queue = new JetStreamSceneQueue(nc, { ackWaitMs: 60_000 });
    const now = Date.now();
    const { queued } = await queue.submit({ name: 'year2020', params: DEFAULT_PARAMS, outDir: '/data/out', source: 'test', createdAt: now, submittedAt: now }, Array.from({ length: SCENES }, (_, i) => job(i)));
    expect(queued.length).toBe(SCENES);

    // A coordinator: its metrics as the CLI registers them, two scenes claimed and running.
    const registry = new Registry();
    // The processes label their own series (app, component) as the scrape job expects.
    registry.setDefaultLabels(defaultMetricLabels('coordinator'));
    const metrics = createCoordinatorMetrics(registry);
    createArchiveMetrics(registry, queue);
    const hold = new Promise<void>((r) => (release = r));
    service = serveScenes(queue, {
      coordinator: 'c1',
      scenesInFlight: 2,
      alreadyDone: async () => false,
      // What runScene emits when a full tile starts; the scene then runs until the test ends.
      run: async (j): Promise<SceneReport> => {
        metrics.onEvent({ type: 'scene-start', runKey: j.key, input: j.input, chips: FULL_TILE_CHIPS, resumed: 0 });
        await hold;
        throw new Error('stopped');
      },
    });
    server = createServer((req, res) => {
      registry.metrics().then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body), (err: Error) => res.writeHead(500).end(err.message));
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    prom = await startPrometheus([{ job: 'coordinator', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }]);

    const query = trigger(workerSo, 'prometheus').query;
    const expected = 2 * FULL_TILE_CHIPS + (SCENES - 2) * FULL_TILE_CHIPS;
    let value = NaN;
    for (let i = 0; i < 60 && value !== expected; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const result = await prom.query(query);
      value = result[0]?.value ?? NaN;
    }
    expect(value).toBe(expected);
    expect(kedaReplicas(workerSo, value, Number(trigger(workerSo, 'prometheus').threshold))).toBe(workerSo.spec.maxReplicaCount);

    // KEDA's JetStream scaler: the consumer's pending plus ack-pending messages.
    const info = await (await jetstreamManager(nc)).consumers.info(js.stream, js.consumer);
    expect(info.num_pending + info.num_ack_pending).toBe(SCENES);
    expect(info.num_ack_pending).toBe(2);
    expect(kedaReplicas(coordinatorSo, info.num_pending + info.num_ack_pending, Number(js.lagThreshold))).toBe(coordinatorSo.spec.maxReplicaCount);
  }, 120_000);
});
