/**
 * The Grafana dashboard against the code: it queries only metric names from
 * shared/metric-names.ts (or prom-client's default process metrics), treats each metric as the
 * type the metrics modules register it with, is valid PromQL, selects only this application's
 * series (the app label both metrics modules set), and queries a datasource variable (importable
 * into any Grafana) that defaults to the provisioned datasource.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createArchiveMetrics } from '../coordinator/archive-metrics.ts';
import { createCoordinatorMetrics } from '../coordinator/metrics.ts';
import { EmbeddedSceneQueue } from '../transport/embedded-scenes.ts';
import { APP_LABEL, COORDINATOR_METRICS, WORKER_METRICS } from '../shared/metric-names.ts';
import type { ChipPool } from '../worker/pool.ts';
import { createWorkerMetrics } from '../worker/metrics.ts';
import { allPanels, dashboardTargets, loadDashboard, metricNames, REPO_ROOT, toPromQL } from './helpers/dashboard.ts';

/** prom-client's default metrics the dashboard may use (they carry no icm_ prefix). */
const DEFAULT_PROCESS_METRICS = [
  'process_resident_memory_bytes',
  'process_cpu_seconds_total',
  'nodejs_eventloop_lag_seconds',
  'nodejs_gc_duration_seconds',
  'nodejs_heap_size_used_bytes',
];

/** Names in metric-names.ts the dashboard leaves out on purpose, and why. */
const NOT_ON_DASHBOARD: Record<string, string> = {
  [WORKER_METRICS.inferenceBatchSize]: 'one chip per onnxruntime run today: the panel would be a flat line at 1',
};

const ICM_NAMES = [...Object.values(COORDINATOR_METRICS), ...Object.values(WORKER_METRICS)];
const KNOWN = new Set<string>([...ICM_NAMES, ...DEFAULT_PROCESS_METRICS]);

const dashboard = loadDashboard();
const targets = dashboardTargets(dashboard);

/** Metric types as the real metrics modules and prom-client's defaults register them. */
async function registeredTypes(): Promise<Map<string, string>> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  createCoordinatorMetrics(registry, async () => 0);
  createArchiveMetrics(registry, new EmbeddedSceneQueue());
  // The metrics module only reads these properties at scrape time.
  const pool = { threads: 1, utilization: 0, queueSize: 0, io: { httpRequests: { ok: 0, retry: 0, error: 0 }, httpBytes: 0, decodes: 0 } } as unknown as ChipPool;
  createWorkerMetrics(registry, pool);
  const json = await registry.getMetricsAsJSON();
  return new Map(json.map((m) => [m.name, String(m.type)]));
}

function readYaml<T>(rel: string): T {
  return parse(readFileSync(path.join(REPO_ROOT, rel), 'utf8')) as T;
}

describe('grafana dashboard', () => {
  it('is a dashboard Grafana 10/11 loads', () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    const panels = allPanels(dashboard) as { id?: number; gridPos?: { x: number; y: number; w: number; h: number } }[];
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) {
      expect(p.gridPos, `panel ${p.id} has a gridPos`).toBeDefined();
      expect(p.gridPos!.x + p.gridPos!.w).toBeLessThanOrEqual(24);
    }
    // No two panels overlap on the 24-column grid.
    const cells = new Set<string>();
    for (const p of panels) {
      const g = p.gridPos!;
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          const key = `${x},${y}`;
          expect(cells.has(key), `panel ${p.id} overlaps another at ${key}`).toBe(false);
          cells.add(key);
        }
      }
    }
    expect(targets.length).toBeGreaterThan(10);
    for (const t of targets) expect(t.expr.trim(), `${t.panel} ${t.refId}`).not.toBe('');
  });

  it('queries only the metric names of shared/metric-names.ts and the default process metrics', () => {
    const unknown: string[] = [];
    const queries = [...targets.map((t) => t.expr), ...(dashboard.templating?.list ?? []).map((v) => JSON.stringify(v.query ?? ''))];
    for (const expr of queries) {
      for (const name of metricNames(expr, KNOWN)) if (!KNOWN.has(name)) unknown.push(`${name} in ${expr}`);
    }
    expect(unknown).toEqual([]);
  });

  it('shows every metric of shared/metric-names.ts (or says why not)', () => {
    const used = new Set(targets.flatMap((t) => metricNames(t.expr, KNOWN)));
    const missing = ICM_NAMES.filter((n) => !used.has(n) && !(n in NOT_ON_DASHBOARD));
    expect(missing).toEqual([]);
    for (const required of ['process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds']) expect(used).toContain(required);
  });

  it('uses each metric as the type it is registered with', async () => {
    const types = await registeredTypes();
    for (const name of KNOWN) {
      if (!(name in NOT_ON_DASHBOARD)) expect(types.has(name), `${name} is registered by a metrics module`).toBe(true);
    }
    const problems: string[] = [];
    for (const { expr } of targets) {
      // _bucket/_sum/_count only on histograms.
      for (const [, base, suffix] of expr.matchAll(/\b([a-z_:][a-z0-9_:]*)_(bucket|sum|count)\b/g)) {
        if (KNOWN.has(base) && types.get(base) !== 'histogram') problems.push(`${base}_${suffix} but ${base} is a ${types.get(base)}: ${expr}`);
      }
      // rate/increase over counters or histogram series, never over a gauge.
      for (const [, fn, series] of expr.matchAll(/\b(rate|irate|increase)\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/g)) {
        const base = series.replace(/_(bucket|sum|count)$/, '');
        const type = types.get(series) ?? types.get(base);
        if (type !== 'counter' && !(type === 'histogram' && base !== series)) problems.push(`${fn}(${series}) over a ${type}: ${expr}`);
      }
      // histogram_quantile over summed bucket rates that keep `le`.
      for (const [call, by] of expr.matchAll(/histogram_quantile\(\s*[0-9.]+\s*,\s*sum by \(([^)]*)\)\s*\(rate\([a-z_:]+_bucket\[/g)) {
        if (!by.split(',').map((s) => s.trim()).includes('le')) problems.push(`${call} drops le`);
      }
      if (expr.includes('histogram_quantile') && !/histogram_quantile\(\s*[0-9.]+\s*,\s*sum by \(/.test(expr)) problems.push(`histogram_quantile not over sum by (le, ...): ${expr}`);
    }
    expect(problems).toEqual([]);
  });

  it("selects only this application's series: every metric in every query carries the app label", () => {
    const unfiltered: string[] = [];
    for (const { panel, expr } of targets) {
      for (const m of expr.matchAll(/\b(?:icm|process|nodejs)_[a-z0-9_]+\b/g)) {
        const after = expr.slice(m.index! + m[0].length);
        const selector = /^\{([^}]*)\}/.exec(after);
        if (!selector || !selector[1].split(',').map((s) => s.trim()).includes(`app="${APP_LABEL}"`)) unfiltered.push(`${panel}: ${m[0]} in ${expr}`);
      }
    }
    expect(unfiltered).toEqual([]);
  });

  it('sets the app and component labels on every series of both metrics modules', async () => {
    const coordinator = new Registry();
    collectDefaultMetrics({ register: coordinator });
    createCoordinatorMetrics(coordinator, async () => 0);
    const worker = new Registry();
    collectDefaultMetrics({ register: worker });
    createWorkerMetrics(worker, { threads: 1, utilization: 0, queueSize: 0, io: { httpRequests: { ok: 0, retry: 0, error: 0 }, httpBytes: 0, decodes: 0 } } as unknown as ChipPool);
    for (const [registry, component] of [[coordinator, 'coordinator'], [worker, 'worker']] as const) {
      const series = (await registry.metrics()).split('\n').filter((l) => l && !l.startsWith('#'));
      expect(series.length).toBeGreaterThan(10);
      for (const line of series) {
        expect(line, component).toContain(`app="${APP_LABEL}"`);
        expect(line, component).toContain(`component="${component}"`);
      }
    }
  });

  it('queries a datasource variable of type prometheus, no hard-coded datasource', () => {
    const variable = (dashboard.templating?.list ?? []).find((v) => v.name === 'datasource') as { type?: string; query?: string } | undefined;
    expect(variable).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const t of targets) expect(t.datasourceUid, `${t.panel} ${t.refId}`).toBe('${datasource}');
    for (const p of allPanels(dashboard) as { title?: string; type?: string; datasource?: { uid?: string } }[]) {
      if (p.type !== 'row' && p.datasource) expect(p.datasource.uid, p.title).toBe('${datasource}');
    }
  });

  it('groups stage latency by the stage label', () => {
    for (const metric of [COORDINATOR_METRICS.stageDuration, WORKER_METRICS.chipStageDuration]) {
      const exprs = targets.filter((t) => t.expr.includes(`${metric}_bucket`)).map((t) => t.expr);
      expect(exprs.some((e) => e.startsWith('histogram_quantile(0.5,') && /by \(le, stage\)/.test(e))).toBe(true);
      expect(exprs.some((e) => e.startsWith('histogram_quantile(0.95,') && /by \(le, stage\)/.test(e))).toBe(true);
    }
  });

  it.skipIf(!existsSync('/usr/bin/promtool'))('is valid PromQL (promtool check rules)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'icm-dash-'));
    try {
      const rules = targets.map((t, i) => ({ record: `dashboard:query_${i}`, expr: toPromQL(t.expr) }));
      const file = path.join(dir, 'rules.json');
      writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }));
      execFileSync('/usr/bin/promtool', ['check', 'rules', file], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('grafana provisioning', () => {
  type Compose = { services: Record<string, { volumes?: string[]; image?: string }> };
  const compose = readYaml<Compose>('deploy/docker-compose.yml');
  const grafana = compose.services.grafana;
  /** Container path where the compose file mounts a repo directory (paths relative to deploy/). */
  const mountOf = (repoDir: string): string | undefined =>
    (grafana.volumes ?? [])
      .map((v) => v.split(':'))
      .find(([src]) => path.resolve(REPO_ROOT, 'deploy', src) === path.join(REPO_ROOT, repoDir))?.[1];

  it('loads the dashboard folder that compose mounts', () => {
    type Providers = { apiVersion: number; providers: { type: string; options: { path: string } }[] };
    const prov = readYaml<Providers>('grafana/provisioning/dashboards/dashboards.yaml');
    expect(prov.apiVersion).toBe(1);
    const file = prov.providers.find((p) => p.type === 'file');
    expect(file).toBeDefined();
    expect(mountOf('grafana/dashboards')).toBe(file!.options.path);
    expect(mountOf('grafana/provisioning')).toBe('/etc/grafana/provisioning');
  });

  it('provisions the datasource the dashboard variable defaults to, pointing at the compose Prometheus', () => {
    type Datasources = { datasources: { uid: string; type: string; url: string; jsonData?: { timeInterval?: string } }[] };
    const ds = readYaml<Datasources>('grafana/provisioning/datasources/prometheus.yaml').datasources;
    const prom = ds.find((d) => d.type === 'prometheus');
    expect(prom?.uid).toBe('prometheus');
    const variable = (dashboard.templating?.list ?? []).find((v) => v.name === 'datasource') as { current?: { value?: string } } | undefined;
    expect(variable?.current?.value).toBe(prom!.uid);
    const url = new URL(prom!.url);
    expect(Object.keys(compose.services)).toContain(url.hostname);
    expect(url.port).toBe('9090');
    // $__rate_interval is at least 4 x timeInterval: it must be the real scrape interval.
    const promConfig = readYaml<{ global: { scrape_interval: string } }>('deploy/prometheus.yml');
    expect(prom!.jsonData?.timeInterval).toBe(promConfig.global.scrape_interval);
  });
});
