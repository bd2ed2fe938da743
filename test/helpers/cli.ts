/** Runs the real CLI (bin/improve-cloud-mask.mjs, on the sources: ICM_RUN_SOURCES=1) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(REPO, 'bin', 'improve-cloud-mask.mjs');
export const SAMPLE = path.resolve(REPO, '..', 'shared', 'data', 's2-l2a-29RKH');
export const DATA = path.resolve(REPO, '..', 'shared', 'data');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves when a line matching `re` appears on stdout or stderr. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<CliResult>;
}

export function spawnCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd ?? REPO, env: { ...process.env, ICM_RUN_SOURCES: '1', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const watchers: { re: RegExp; resolve: (s: string) => void }[] = [];
  const check = (): void => {
    for (const w of [...watchers]) {
      const m = (out + err).match(w.re);
      if (m) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve(m[0]);
      }
    }
  };
  child.stdout!.on('data', (d) => ((out += String(d)), check()));
  child.stderr!.on('data', (d) => ((err += String(d)), check()));
  const exited = new Promise<CliResult>((resolve) => child.once('close', (code) => resolve({ code, stdout: out, stderr: err })));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor: (re, timeoutMs = 60_000) =>
      new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}; stdout: ${out.slice(-1000)} stderr: ${err.slice(-1000)}`)), timeoutMs);
        watchers.push({ re, resolve: (s) => (clearTimeout(t), resolve(s)) });
        check();
      }),
  };
}

export function runCli(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return spawnCli(args, options).exited;
}
