/**
 * A real Prometheus (Debian's /usr/bin/prometheus) for a test file: a random loopback port, a
 * temporary TSDB, a 1 s scrape interval over static targets. `query` runs an instant query
 * through the HTTP API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.ts';

export const PROMETHEUS_BIN = '/usr/bin/prometheus';

export interface ScrapeTarget {
  job: string;
  /** `http://host:port` (scraped on /metrics) or `http://host:port/some/path`. */
  url: string;
}

/** One series of an instant query; a scalar result comes back as one series without labels. */
export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

export interface PrometheusServer {
  url: string;
  /** Instant query at the current time. Throws on a PromQL or HTTP error. */
  query(expr: string): Promise<PromSample[]>;
  /** Scrape health per target, from /api/v1/targets. */
  targets(): Promise<{ job: string; instance: string; health: string; lastError: string }[]>;
  close(): Promise<void>;
}

export function prometheusAvailable(): boolean {
  return existsSync(PROMETHEUS_BIN);
}

/** The scrape config: one job per distinct job name, static targets, 1 s interval. */
export function scrapeConfig(targets: ScrapeTarget[]): string {
  const jobs = new Map<string, { path: string; hosts: string[] }>();
  for (const t of targets) {
    const u = new URL(t.url);
    const metricsPath = u.pathname === '/' ? '/metrics' : u.pathname;
    const job = jobs.get(t.job) ?? { path: metricsPath, hosts: [] };
    if (job.path !== metricsPath) throw new Error(`job ${t.job}: targets with different paths (${job.path}, ${metricsPath})`);
    job.hosts.push(u.host);
    jobs.set(t.job, job);
  }
  const lines = ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', '  evaluation_interval: 1s', 'scrape_configs:'];
  for (const [name, job] of jobs) {
    lines.push(`  - job_name: ${JSON.stringify(name)}`, `    metrics_path: ${JSON.stringify(job.path)}`, '    static_configs:');
    lines.push(`      - targets: [${job.hosts.map((h) => JSON.stringify(h)).join(', ')}]`);
  }
  return `${lines.join('\n')}\n`;
}

async function waitReady(url: string, child: ChildProcess, stderr: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${stderr()}`);
    const ok = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`prometheus not ready within ${timeoutMs} ms: ${stderr()}`);
}

interface ApiResponse<T> {
  status: 'success' | 'error';
  data: T;
  error?: string;
}

type QueryData =
  | { resultType: 'vector'; result: { metric: Record<string, string>; value: [number, string] }[] }
  | { resultType: 'scalar'; result: [number, string] }
  | { resultType: 'matrix' | 'string'; result: unknown };

/** Prometheus writes sample values as strings: "1.5", "NaN", "+Inf", "-Inf". */
function sampleValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

async function api<T>(url: string): Promise<T> {
  const res = await fetch(url);
  const body = (await res.json()) as ApiResponse<T>;
  if (body.status !== 'success') throw new Error(`prometheus ${res.status}: ${body.error ?? 'unknown error'} (${url})`);
  return body.data;
}

export async function startPrometheus(targets: ScrapeTarget[]): Promise<PrometheusServer> {
  if (!prometheusAvailable()) throw new Error(`${PROMETHEUS_BIN} is missing (apt-get install prometheus)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'icm-prom-'));
  const config = path.join(dir, 'prometheus.yml');
  writeFileSync(config, scrapeConfig(targets));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    PROMETHEUS_BIN,
    [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitReady(url, child, () => stderr, 30_000);
  } catch (err) {
    await close();
    throw err;
  }
  return {
    url,
    close,
    async query(expr) {
      const data = await api<QueryData>(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      if (data.resultType === 'scalar') return [{ metric: {}, value: sampleValue(data.result[1]) }];
      if (data.resultType !== 'vector') throw new Error(`${expr}: unexpected ${data.resultType} result`);
      return data.result.map((s) => ({ metric: s.metric, value: sampleValue(s.value[1]) }));
    },
    async targets() {
      type Active = { labels: Record<string, string>; health: string; lastError: string };
      const data = await api<{ activeTargets: Active[] }>(`${url}/api/v1/targets?state=active`);
      return data.activeTargets.map((t) => ({ job: t.labels.job ?? '', instance: t.labels.instance ?? '', health: t.health, lastError: t.lastError }));
    },
  };
}
