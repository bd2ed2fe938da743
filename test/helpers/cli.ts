/** Runs the real CLI (bin/improve-cloud-mask.mjs, on the sources: ICM_RUN_SOURCES=1) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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

export interface CliOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Node flags before the script (e.g. a --import). */
  nodeArgs?: string[];
  /** Another entry than bin/improve-cloud-mask.mjs (the compiled build's dist/cli/bin.js). */
  entry?: string;
}

export function spawnCli(args: string[], options: CliOptions = {}): Proc {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.entry ?? BIN, ...args], { cwd: options.cwd ?? REPO, env: { ...process.env, ICM_RUN_SOURCES: '1', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
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

export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return spawnCli(args, options).exited;
}

/**
 * A module-resolution recorder: pass `nodeArgs` to the CLI, then `loaded()` lists every URL it
 * resolved (main thread and worker threads: they inherit the --import). Tells what a command
 * loaded without timing anything.
 */
export function loadRecorder(dir: string): { nodeArgs: string[]; env: NodeJS.ProcessEnv; loaded: () => string[] } {
  mkdirSync(dir, { recursive: true });
  const log = path.join(dir, 'loaded.txt');
  writeFileSync(log, '');
  writeFileSync(
    path.join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.ICM_TEST_LOAD_LOG, r.url + '\\n');
  return r;
}
`,
  );
  writeFileSync(path.join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n`);
  return {
    nodeArgs: ['--import', path.join(dir, 'register.mjs')],
    env: { ICM_TEST_LOAD_LOG: log },
    loaded: () => readFileSync(log, 'utf8').split('\n').filter(Boolean),
  };
}
