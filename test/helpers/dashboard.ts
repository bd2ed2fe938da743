/**
 * Reads the Grafana dashboard's PromQL: every panel target's `expr`, and the metric names in it.
 * Shared by the dashboard's static test and the test that runs its queries on a real Prometheus.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DASHBOARD_PATH = path.join(REPO_ROOT, 'grafana', 'dashboards', 'improve-cloud-mask.json');

export interface DashboardTarget {
  panel: string;
  refId: string;
  expr: string;
  datasourceUid: string | undefined;
}

interface Panel {
  title?: string;
  type?: string;
  datasource?: { uid?: string };
  targets?: { refId?: string; expr?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}

export interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating?: { list?: { name: string; query?: unknown }[] };
}

export function loadDashboard(file = DASHBOARD_PATH): Dashboard {
  return JSON.parse(readFileSync(file, 'utf8')) as Dashboard;
}

/** Every panel, rows' nested panels included. */
export function allPanels(dashboard: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (panels: Panel[] | undefined): void => {
    for (const p of panels ?? []) {
      out.push(p);
      walk(p.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

export function dashboardTargets(dashboard: Dashboard): DashboardTarget[] {
  return allPanels(dashboard).flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      panel: p.title ?? '(untitled)',
      refId: t.refId ?? '?',
      expr: t.expr ?? '',
      datasourceUid: t.datasource?.uid ?? p.datasource?.uid,
    })),
  );
}

/** Grafana's built-in interval variables, replaced by fixed windows so Prometheus can run the query. */
export function toPromQL(expr: string, windows = { rateInterval: '1m', interval: '15s', range: '5m' }): string {
  return expr
    .replaceAll('$__rate_interval', windows.rateInterval)
    .replaceAll('${__rate_interval}', windows.rateInterval)
    .replaceAll('$__interval', windows.interval)
    .replaceAll('${__interval}', windows.interval)
    .replaceAll('$__range', windows.range)
    .replaceAll('${__range}', windows.range);
}

const HISTOGRAM_SUFFIXES = ['_bucket', '_sum', '_count'];

/**
 * Metric names in a PromQL expression: identifiers starting with icm_, process_ or nodejs_,
 * outside label matchers, strings and `by (...)` lists; `_bucket`, `_sum`, `_count` stripped
 * when `known` has the base name.
 */
export function metricNames(expr: string, known: ReadonlySet<string>): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\b(by|without)\s*\([^)]*\)/g, '');
  const names = new Set<string>();
  for (const [id] of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    if (!/^(icm_|process_|nodejs_)/.test(id)) continue;
    const suffix = HISTOGRAM_SUFFIXES.find((s) => id.endsWith(s) && known.has(id.slice(0, -s.length)));
    names.add(suffix ? id.slice(0, -suffix.length) : id);
  }
  return [...names];
}
