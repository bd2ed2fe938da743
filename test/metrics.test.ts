/**
 * Metrics from real processes: a coordinator (`batch --nats`) and two workers against a real
 * nats-server, scraped directly (the counters move by exactly what the run implies) and by a
 * real Prometheus (the dashboard's main queries return data through its HTTP API).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { APP_LABEL, COORDINATOR_METRICS as C, WORKER_METRICS as W } from '../shared/metric-names.ts';
import { SAMPLE, spawnCli, type Proc } from './helpers/cli.ts';
import { dashboardTargets, loadDashboard, toPromQL } from './helpers/dashboard.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';
import { prometheusAvailable, startPrometheus, type PrometheusServer, type PromSample } from './helpers/prometheus.ts';
import { freePort } from './helpers/net.ts';

/** Parses the Prometheus text format into `name{labels}` -> value (the app/component labels every series carries left out). */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(withoutDefaultLabels(line.slice(0, i)), Number(line.slice(i + 1)));
  }
  return out;
}

function withoutDefaultLabels(series: string): string {
  return series.replace(/\b(app|component)="[^"]*",?/g, '').replace(',}', '}').replace('{}', '');
}

async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  return parseMetrics(await res.text());
}

const sum = (maps: Map<string, number>[], key: string): number => maps.reduce((a, m) => a + (m.get(key) ?? 0), 0);

let tmp: string;
let nats: NatsServer;
let prom: PrometheusServer | null = null;
const procs: Proc[] = [];
const ports = { coordinator: 0, workers: [0, 0] };
const CHIPS = 9 * 2;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-metrics-'));
  nats = await startNatsServer();
  ports.coordinator = await freePort();
  ports.workers = [await freePort(), await freePort()];
  if (prometheusAvailable()) {
    // Prometheus first, so it scrapes while the work runs and rates have something to see.
    prom = await startPrometheus([
      { job: 'coordinator', url: `http://127.0.0.1:${ports.coordinator}` },
      ...ports.workers.map((p) => ({ job: 'worker', url: `http://127.0.0.1:${p}` })),
    ]);
  }
  for (const [i, port] of ports.workers.entries()) {
    procs.push(spawnCli(['worker', '--nats', nats.url, '--threads', '1', '--worker-id', `w${i}`, '--allow-root', path.dirname(SAMPLE), '--metrics-port', String(port)]));
  }
  await Promise.all(procs.map((p) => p.waitFor(/pulling from/)));
  // Two scenes (the band folder and its STAC item): 18 chips.
  const manifest = path.join(tmp, 'scenes.txt');
  writeFileSync(manifest, `${SAMPLE} scl\n${path.join(SAMPLE, 'S2A_29RKH_20200219_0_L2A.json')} scl\n`);
  const coordinator = spawnCli(['batch', '--manifest', manifest, '--out-dir', path.join(tmp, 'out'), '--nats', nats.url, '--scenes-in-flight', '1', '--metrics-port', String(ports.coordinator), '--keep-serving']);
  procs.push(coordinator);
  await coordinator.waitFor(/still serving/, 120_000);
}, 180_000);

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGTERM');
  await Promise.all(procs.map((p) => p.exited));
  await prom?.close();
  await nats?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('metrics of a real run', () => {
  test('coordinator counters move by exactly what the run implies', async () => {
    const m = await scrape(ports.coordinator);
    expect(m.get(C.scenesStarted)).toBe(2);
    expect(m.get(C.scenesCompleted)).toBe(2);
    expect(m.get(C.scenesFailed)).toBe(0);
    expect(m.get(C.chipsPublished)).toBe(CHIPS);
    expect(m.get(C.chipsCompleted)).toBe(CHIPS);
    expect(m.get(C.chipsDeadLettered)).toBe(0);
    expect(m.get(C.chipsInFlight)).toBe(0);
    expect(m.get(C.chipsRemaining)).toBe(0);
    expect(m.get(C.consumerPending)).toBe(0);
    expect(m.get(C.pixelsProcessed)).toBe(2 * 1098 * 1098);
    expect(m.get(`${C.sceneDuration}_count`)).toBe(2);
    expect(m.get(`${C.sceneCloudFraction}_count`)).toBe(2);
    for (const stage of ['plan', 'stitch', 'merge', 'write']) expect(m.get(`${C.stageDuration}_count{stage="${stage}"}`)).toBe(2);
    expect(m.get('process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  test('worker counters add up to the chips of the run, and the probes answer', async () => {
    const ms = await Promise.all(ports.workers.map(scrape));
    expect(sum(ms, W.chipsProcessed)).toBe(CHIPS);
    for (const stage of ['read', 'inference', 'threshold', 'publish']) {
      expect(sum(ms, `${W.chipStageDuration}_count{stage="${stage}"}`)).toBe(CHIPS);
    }
    // The bundled models run merged (one onnxruntime run per chip): no per-model stage.
    expect(sum(ms, `${W.chipStageDuration}_count{stage="cloud_inference"}`)).toBe(0);
    expect(sum(ms, `${W.chipDuration}_count`)).toBe(CHIPS);
    // Each worker thread loaded both models once.
    expect(sum(ms, `${W.modelLoadDuration}_count`)).toBeGreaterThanOrEqual(1);
    for (const m of ms) expect(m.get(W.poolThreads)).toBe(1);
    // Local files: tiles decoded, no http; the counters exist from the start.
    expect(sum(ms, W.tileDecodes)).toBeGreaterThan(0);
    expect(sum(ms, `${W.httpRequests}{outcome="ok"}`)).toBe(0);
    expect(sum(ms, W.httpRetries)).toBe(0);
    for (const port of [...ports.workers, ports.coordinator]) {
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    }
  });

  test.skipIf(!prometheusAvailable())('the dashboard main queries return data through a real Prometheus', async () => {
    // The dashboard selects this application's series by the label both processes set.
    const app = `{app="${APP_LABEL}"}`;
    const main = [
      `sum by (instance) (rate(${W.chipsProcessed}${app}[$__rate_interval]))`,
      `sum(rate(${C.chipsCompleted}${app}[5m]))`,
      `histogram_quantile(0.95, sum by (le, stage) (rate(${W.chipStageDuration}_bucket${app}[$__rate_interval])))`,
      `histogram_quantile(0.5, sum by (le, stage) (rate(${C.stageDuration}_bucket${app}[$__rate_interval])))`,
      `max(${C.consumerPending}${app})`,
      `sum(${C.scenesCompleted}${app})`,
      `${W.poolUtilization}${app}`,
      `process_resident_memory_bytes${app}`,
    ];
    const dashboardExprs = new Set(dashboardTargets(loadDashboard()).map((t) => t.expr));
    for (const expr of main) expect(dashboardExprs.has(expr), `dashboard has ${expr}`).toBe(true);
    const results = new Map<string, PromSample[]>();
    const deadline = Date.now() + 20_000;
    for (;;) {
      for (const expr of main) results.set(expr, await prom!.query(toPromQL(expr)));
      const final = results.get(`sum(${C.scenesCompleted}${app})`)?.[0]?.value === 2;
      if ((final && [...results.values()].every((r) => r.length > 0)) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    for (const expr of main) expect(results.get(expr)?.length, `no data for ${expr}`).toBeGreaterThan(0);
    expect(results.get(`sum(${C.scenesCompleted}${app})`)![0].value).toBe(2);
    const rss = results.get(`process_resident_memory_bytes${app}`)!;
    expect(rss.map((s) => s.metric.job).sort()).toEqual(['coordinator', 'worker', 'worker']);
    expect(rss.map((s) => s.metric.component).sort()).toEqual(['coordinator', 'worker', 'worker']);
    const targets = await prom!.targets();
    expect(targets.every((t) => t.health === 'up')).toBe(true);
  });
});
