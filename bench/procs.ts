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

export function spawnCli(args: string[]): CliProc {
  const started = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
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

/** Prometheus text -> sample value by "name{labels}" (labels as written). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([^\s{]+(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
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

/** Samples VmRSS of the given processes every `everyMs`, keeping the maximum per process. */
export class RssSampler {
  private readonly timer: NodeJS.Timeout;
  readonly maxMb = new Map<CliProc, number>();

  constructor(private readonly procs: CliProc[], everyMs = 250) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  sample(): void {
    for (const p of this.procs) {
      const r = p.rssMb();
      if (r !== null) this.maxMb.set(p, Math.max(r, this.maxMb.get(p) ?? 0));
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
