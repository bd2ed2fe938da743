/**
 * The dashboard's queries on a real Prometheus (Debian's /usr/bin/prometheus, 1 s scrapes).
 *
 * Every dashboard query, against stand-in targets: node:http servers with prom-client
 * registries that register the metric names of shared/metric-names.ts and move them on a
 * timer, so each query has moving data. test/metrics.test.ts runs the main queries against
 * a real coordinator and real workers.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_LABEL, CHIP_STAGES, COORDINATOR_METRICS as C, COORDINATOR_STAGES, defaultMetricLabels, WORKER_METRICS as W } from '../shared/metric-names.ts';
import { dashboardTargets, loadDashboard, toPromQL } from './helpers/dashboard.ts';
import { prometheusAvailable, startPrometheus, type PrometheusServer, type PromSample } from './helpers/prometheus.ts';

interface FakeTarget {
  url: string;
  tick(): void;
  close(): Promise<void>;
}

async function serve(registry: Registry, tick: () => void): Promise<FakeTarget> {
  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end();
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    tick,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/** A coordinator's metrics, moving as if scenes were being processed. */
function fakeCoordinator(): Promise<FakeTarget> {
  const registers = [new Registry()];
  // The labels the real metrics module sets: the dashboard selects on them.
  registers[0].setDefaultLabels(defaultMetricLabels('coordinator'));
  collectDefaultMetrics({ register: registers[0] });
  const counters = [C.scenesStarted, C.scenesCompleted, C.scenesFailed, C.chipsPublished, C.chipsCompleted, C.chipsRedelivered, C.chipsDeadLettered, C.chipsResumed].map(
    (name) => new Counter({ name, help: name, registers }),
  );
  const pixels = new Counter({ name: C.pixelsProcessed, help: 'px', registers });
  const [inFlight, remaining, pending] = [C.chipsInFlight, C.chipsRemaining, C.consumerPending].map((name) => new Gauge({ name, help: name, registers }));
  const sceneDuration = new Histogram({ name: C.sceneDuration, help: 's', registers, buckets: [1, 10, 60, 600] });
  const stages = new Histogram({ name: C.stageDuration, help: 's', labelNames: ['stage'], registers, buckets: [0.01, 0.1, 1, 10] });
  const cloud = new Histogram({ name: C.sceneCloudFraction, help: 'f', registers, buckets: [0.1, 0.3, 0.5, 0.9, 1] });
  // The archive tier's gauges.
  const archive = new Gauge({ name: C.archiveScenes, help: 'n', labelNames: ['archive', 'state'], registers });
  const [alive, sceneLag] = [C.coordinatorsAlive, C.sceneQueueLag].map((name) => new Gauge({ name, help: name, registers }));
  let left = 10_000;
  return serve(registers[0], () => {
    for (const c of counters) c.inc();
    pixels.inc(384 * 384);
    left -= 1;
    remaining.set(left);
    for (const [state, n] of [['queued', left / 10], ['running', 2], ['done', 10_000 - left]] as const) archive.set({ archive: 'a1', state }, n);
    alive.set(2);
    sceneLag.set(left / 10);
    inFlight.set(32);
    pending.set(100 + (left % 7));
    sceneDuration.observe(5 + Math.random() * 50);
    for (const stage of COORDINATOR_STAGES) stages.observe({ stage }, Math.random());
    cloud.observe(Math.random());
  });
}

/** A worker's metrics. */
function fakeWorker(): Promise<FakeTarget> {
  const registers = [new Registry()];
  registers[0].setDefaultLabels(defaultMetricLabels('worker'));
  collectDefaultMetrics({ register: registers[0] });
  const stages = new Histogram({ name: W.chipStageDuration, help: 's', labelNames: ['stage'], registers, buckets: [0.01, 0.1, 1] });
  const chip = new Histogram({ name: W.chipDuration, help: 's', registers, buckets: [0.1, 1, 10] });
  const batch = new Histogram({ name: W.inferenceBatchSize, help: 'n', registers, buckets: [1, 2, 4] });
  const load = new Histogram({ name: W.modelLoadDuration, help: 's', registers, buckets: [0.1, 1, 10] });
  const [utilization, queue, threads] = [W.poolUtilization, W.poolQueueLength, W.poolThreads].map((name) => new Gauge({ name, help: name, registers }));
  const [processed, retried, bad] = [W.chipsProcessed, W.chipsRetried, W.badMessages].map((name) => new Counter({ name, help: name, registers }));
  const errors = new Counter({ name: W.errors, help: 'errors', labelNames: ['code'], registers });
  const http = new Counter({ name: W.httpRequests, help: 'n', labelNames: ['outcome'], registers });
  const [retries, bytes, decodes] = [W.httpRetries, W.httpBytes, W.tileDecodes].map((name) => new Counter({ name, help: name, registers }));
  return serve(registers[0], () => {
    http.inc({ outcome: 'ok' }, 3);
    http.inc({ outcome: 'retry' });
    retries.inc();
    bytes.inc(1e6);
    decodes.inc(4);
    for (const stage of CHIP_STAGES) stages.observe({ stage }, Math.random() / 2);
    chip.observe(Math.random() * 2);
    batch.observe(1);
    load.observe(0.5);
    utilization.set(0.5 + Math.random() / 2);
    queue.set(Math.floor(Math.random() * 4));
    threads.set(2);
    processed.inc();
    retried.inc();
    bad.inc();
    errors.inc({ code: 'READ_FAILED' });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs every query until each returns at least one finite sample, or the deadline passes. */
async function queryAll(prom: PrometheusServer, exprs: string[], timeoutMs: number): Promise<Map<string, PromSample[]>> {
  const results = new Map<string, PromSample[]>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const expr of exprs) results.set(expr, await prom.query(expr));
    const done = [...results.values()].every((r) => r.length > 0 && r.every((s) => Number.isFinite(s.value)));
    if (done || Date.now() > deadline) return results;
    await sleep(1000);
  }
}

const available = prometheusAvailable();
const title = available ? 'dashboard queries on a real Prometheus' : 'dashboard queries on a real Prometheus (SKIPPED: /usr/bin/prometheus is missing; apt-get install prometheus)';

describe.skipIf(!available)(title, () => {
  let prom: PrometheusServer | undefined;
  const fakes: FakeTarget[] = [];
  let timer: NodeJS.Timeout | undefined;
  let results = new Map<string, PromSample[]>();
  const exprs = [...new Set(dashboardTargets(loadDashboard()).map((t) => toPromQL(t.expr)))];

  beforeAll(async () => {
    fakes.push(await fakeCoordinator(), await fakeWorker(), await fakeWorker());
    const garbage: number[][] = [];
    timer = setInterval(() => {
      for (const f of fakes) f.tick();
      // Young-generation garbage, so nodejs_gc_duration_seconds has samples.
      garbage.splice(0, garbage.length, ...Array.from({ length: 64 }, () => new Array<number>(2048).fill(Math.random())));
    }, 100);
    const [coordinator, ...workers] = fakes;
    prom = await startPrometheus([{ job: 'coordinator', url: coordinator.url }, ...workers.map((w) => ({ job: 'worker', url: w.url }))]);
    results = await queryAll(prom, exprs, 25_000);
    // On a loaded machine the second worker's rate can lag a scrape behind: wait for both.
    const byInstance = exprs.find((e) => e.startsWith(`sum by (instance) (rate(${W.chipsProcessed}`));
    for (let i = 0; byInstance && i < 15 && (results.get(byInstance)?.length ?? 0) < 2; i++) {
      await sleep(1000);
      results.set(byInstance, await prom.query(byInstance));
    }
  }, 60_000);

  afterAll(async () => {
    clearInterval(timer);
    await prom?.close();
    await Promise.all(fakes.map((f) => f.close()));
  });

  it('scrapes every target', async () => {
    const targets = await prom!.targets();
    expect(targets.map((t) => `${t.job} ${t.health} ${t.lastError}`).sort()).toEqual(['coordinator up ', 'worker up ', 'worker up ']);
  });

  it('returns finite data for every dashboard query', () => {
    const empty = exprs.filter((e) => (results.get(e) ?? []).length === 0);
    const notFinite = exprs.filter((e) => (results.get(e) ?? []).some((s) => !Number.isFinite(s.value)));
    expect(empty).toEqual([]);
    expect(notFinite).toEqual([]);
  });

  it('splits worker throughput by instance and latency by stage', () => {
    const byInstance = exprs.find((e) => e.startsWith(`sum by (instance) (rate(${W.chipsProcessed}`));
    expect(byInstance).toBeDefined();
    expect(results.get(byInstance!)!.map((s) => s.metric.instance)).toHaveLength(2);
    for (const [metric, stages] of [[W.chipStageDuration, CHIP_STAGES], [C.stageDuration, COORDINATOR_STAGES]] as const) {
      for (const q of ['0.5', '0.95']) {
        const expr = exprs.find((e) => e.startsWith(`histogram_quantile(${q},`) && e.includes(`${metric}_bucket`));
        expect(expr, `${metric} p${q}`).toBeDefined();
        expect(results.get(expr!)!.map((s) => s.metric.stage).sort()).toEqual([...stages].sort());
      }
    }
  });

  it('computes a positive ETA and per-process memory with job, instance and component labels', () => {
    const app = `{app="${APP_LABEL}"}`;
    const eta = exprs.find((e) => e.startsWith(`sum(${C.chipsRemaining}${app}) / (sum(rate(${C.chipsCompleted}${app}[5m]))`));
    expect(eta).toBeDefined();
    expect(results.get(eta!)![0].value).toBeGreaterThan(0);
    const rss = results.get(`process_resident_memory_bytes${app}`) ?? [];
    expect(rss.map((s) => s.metric.job).sort()).toEqual(['coordinator', 'worker', 'worker']);
    expect(rss.map((s) => s.metric.component).sort()).toEqual(['coordinator', 'worker', 'worker']);
    expect(new Set(rss.map((s) => s.metric.instance)).size).toBe(3);
  });
});
