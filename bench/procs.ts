/**
 * The real CLI as child processes, watched from outside: wall time to a log line, peak RSS
 * (VmHWM from /proc), and the Prometheus metrics each process serves (--metrics-port 0).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO } from './scene.ts';

export const BIN = path.join(REPO, 'bin', 'improve-cloud-mask.mjs');

export interface CliProc {
  child: ChildProcess;
  started: number;
  output(): string;
  /** Resolves with the first match of `re` on stdout or stderr; rejects if the process exits first. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Peak resident set size so far, MB (VmHWM); null once the process is gone. */
  peakRssMb(): number | null;
  /** Current resident set size, MB. */
  rssMb(): number | null;
  /** CPU seconds so far (user + system), main thread and the rest; null once the process is gone. */
  cpu(): ThreadCpu | null;
  /** SIGTERM, then SIGKILL after a grace period; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

function statusField(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** CPU seconds of one process: its main thread, and all its other threads together (ended ones too). */
export interface ThreadCpu {
  main: number;
  others: number;
}

const CLK_TCK = 100;

/** User + system seconds from a /proc stat line (fields 14 and 15). */
function statSeconds(file: string): number {
  const stat = readFileSync(file, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** A live process's CPU seconds, all its threads (ended ones too). */
export function processSeconds(pid: number): number {
  return statSeconds(`/proc/${pid}/stat`);
}

/** A live process's CPU seconds (the process's own stat counts its ended threads; the main thread's is its task's). */
export function processCpu(pid: number): ThreadCpu | null {
  try {
    const all = processSeconds(pid);
    const main = statSeconds(`/proc/${pid}/task/${pid}/stat`);
    return { main, others: Math.max(0, all - main) };
  } catch {
    return null;
  }
}

export function spawnCli(args: string[]): CliProc {
  const started = performance.now();
  // ICM_BENCH_NODE_ARGS: node options for every process the bench starts (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof";
  // node refuses --cpu-prof in NODE_OPTIONS).
  const nodeArgs = process.env.ICM_BENCH_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, BIN, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const watchers = new Set<() => void>();
  const onData = (d: Buffer): void => {
    text = (text + d.toString()).slice(-200_000);
    for (const w of [...watchers]) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
    for (const w of [...watchers]) w();
  });
  return {
    child,
    started,
    output: () => text,
    waitFor: (re, timeoutMs = 30 * 60_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${re}`)), timeoutMs);
        const check = (): void => {
          const m = text.match(re);
          if (m) done(null, m);
          else if (gone) done(new Error(`${path.basename(BIN)} ${args[0]} exited (${child.exitCode}) before ${re}:\n${text.slice(-3000)}`));
        };
        const done = (err: Error | null, m?: RegExpMatchArray): void => {
          clearTimeout(timer);
          watchers.delete(check);
          if (err) reject(err);
          else resolve(m!);
        };
        watchers.add(check);
        check();
      }),
    peakRssMb: () => statusField(child.pid!, 'VmHWM'),
    rssMb: () => statusField(child.pid!, 'VmRSS'),
    cpu: () => (gone ? null : processCpu(child.pid!)),
    stop: async (graceMs = 20_000) => {
      if (!gone) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const code = await exited;
        clearTimeout(t);
        return code;
      }
      return exited;
    },
    exited,
  };
}

/** Prometheus text -> sample value by "name{labels}" (labels as written, less the app/component labels on every series). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([^\s{]+(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m) out.set(m[1]!.replace(/\b(app|component)="[^"]*",?/g, '').replace(',}', '}').replace('{}', ''), Number(m[2]));
  }
  return out;
}

export async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  if (!res.ok) throw new Error(`GET ${url}/metrics: HTTP ${res.status}`);
  return parseMetrics(await res.text());
}

/** The metrics URL a process logged ("metrics on http://host:port/metrics"). */
export async function metricsUrl(p: CliProc): Promise<string> {
  const m = await p.waitFor(/metrics on (http:\/\/\S+)\/metrics/, 120_000);
  return m[1]!;
}

/** Busy and total CPU jiffies of the whole machine (/proc/stat). */
function cpuTimes(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Fraction of the machine's CPU busy over the next `ms` milliseconds. */
export async function machineBusy(ms = 2000): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

/**
 * Waits until the machine is nearly idle (other work on a shared machine skews every figure),
 * at most `maxMs`; returns the busy fraction last seen.
 */
export async function waitIdle(log: (line: string) => void, threshold = 0.1, maxMs = 15 * 60_000): Promise<number> {
  const deadline = Date.now() + maxMs;
  let busy = await machineBusy();
  if (busy <= threshold) return busy;
  log(`  waiting for the machine to be idle (${Math.round(100 * busy)} % busy)`);
  while (busy > threshold && Date.now() < deadline) busy = await machineBusy(5000);
  if (busy > threshold) log(`  still ${Math.round(100 * busy)} % busy after ${Math.round(maxMs / 60_000)} min: measuring anyway`);
  return busy;
}
