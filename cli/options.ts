/**
 * Command-line options shared by the subcommands, and the one place that turns flags and a
 * --params file into validated workflow parameters.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { CloudMaskError } from '../shared/errors.ts';
import { MAX_CHIPS_PER_JOB } from '../shared/messages.ts';
import { resolveParams, type WorkflowParams } from '../shared/params.ts';

export type Flags = Record<string, string | boolean | string[] | undefined>;

/** Loads a YAML/JSON parameter file with the workflow's names (a `parameters:` key is accepted too). */
export function readParamsFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CloudMaskError('INPUT_NOT_FOUND', `--params ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    // yaml's message goes on with a code frame of the file: the first line says what and where.
    throw new CloudMaskError('BAD_OPTION', `--params ${file}: not YAML/JSON (${(err as Error).message.split('\n')[0].trim()})`);
  }
  const obj = (doc as { parameters?: unknown })?.parameters ?? doc;
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new CloudMaskError('BAD_OPTION', `--params ${file}: expected a mapping of parameter names`);
  return obj as Record<string, unknown>;
}

/** Parameters from --params, then flags on top. */
export function paramsFromFlags(flags: Flags): WorkflowParams {
  const fromFile = typeof flags.params === 'string' ? readParamsFile(flags.params) : {};
  const over: Record<string, unknown> = { ...fromFile };
  const set = (name: string, flag: string): void => {
    if (flags[flag] !== undefined) over[name] = flags[flag];
  };
  set('cloud_thr', 'cloud-thr');
  set('shadow_thr', 'shadow-thr');
  set('cloud_model', 'cloud-model');
  set('shadow_model', 'shadow-model');
  set('min_area', 'min-area');
  if (flags['in-memory']) over.in_memory = true;
  if (flags.harmonize) over.harmonize = true;
  return resolveParams(over);
}

/**
 * A positive integer flag. With `max`, larger values are refused with the bound and its reason
 * named (never clamped: a silent clamp hides a typo, and a huge value would exhaust the machine).
 */
export function positiveInt(flags: Flags, name: string, fallback: number, max?: { limit: number; why: string }): number {
  const v = flags[name];
  if (v === undefined) return fallback;
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < 1) throw new CloudMaskError('BAD_OPTION', `--${name} must be a positive integer, got ${JSON.stringify(v)}`);
  if (max && n > max.limit) throw new CloudMaskError('BAD_OPTION', `--${name} ${n} is over the limit of ${max.limit} (${max.why})`);
  return n;
}

export function defaultThreads(): number {
  return os.availableParallelism();
}

/** Threads per core we allow: each thread loads both models (~100-250 MB), so more only thrashes. */
export const THREADS_PER_CORE_LIMIT = 4;

/** --threads, at most {@link THREADS_PER_CORE_LIMIT} per core of this machine. */
export function threadsFromFlags(flags: Flags): number {
  const cores = os.availableParallelism();
  return positiveInt(flags, 'threads', defaultThreads(), { limit: THREADS_PER_CORE_LIMIT * cores, why: `${THREADS_PER_CORE_LIMIT} x the ${cores} cores here; every thread loads both models` });
}

/** Chips one scene keeps published and unfinished, at most (each holds a job, and with inline pixels 6 MiB). */
export const MAX_IN_FLIGHT = 1024;
/** Scenes a batch keeps open at once, at most (each holds its scene-sized flag rasters, ~120 MB for a full tile). */
export const MAX_SCENES_IN_FLIGHT = 16;

export function maxInFlightFromFlags(flags: Flags, fallback: number): number {
  return positiveInt(flags, 'max-in-flight', fallback, { limit: MAX_IN_FLIGHT, why: 'each chip in flight holds its job in memory' });
}

export function scenesInFlightFromFlags(flags: Flags): number {
  return positiveInt(flags, 'scenes-in-flight', 2, { limit: MAX_SCENES_IN_FLIGHT, why: 'each open scene holds scene-sized rasters in memory' });
}

export function chipsPerJobFromFlags(flags: Flags): number {
  return positiveInt(flags, 'chips-per-job', 4, { limit: MAX_CHIPS_PER_JOB, why: 'the most chips one job message may carry' });
}

/**
 * Checks every bounded numeric flag a command may use, before any work (a bad --threads must
 * not wait until the scene has been opened and planned).
 */
export function checkNumericFlags(flags: Flags): void {
  threadsFromFlags(flags);
  maxInFlightFromFlags(flags, 1);
  scenesInFlightFromFlags(flags);
  chipsPerJobFromFlags(flags);
  positiveInt(flags, 'ack-wait-ms', 30_000, { limit: 3_600_000, why: 'one hour; running chips heartbeat, so a long wait only delays the redelivery of a dead worker\'s jobs' });
  positiveInt(flags, 'max-deliveries', 4, { limit: 100, why: 'a job failing that often will not succeed' });
}

export function requireString(flags: Flags, name: string, command: string): string {
  const v = flags[name];
  if (typeof v !== 'string' || v.length === 0) throw new CloudMaskError('BAD_OPTION', `${command} needs --${name}`);
  return v;
}

/**
 * NATS connection settings from the environment, under the names the `nats` CLI reads (its
 * context variables), so secrets need not be flags (flags show in `ps` and in pod specs).
 * Flags given on the command line win.
 */
export const NATS_ENV: Record<string, string> = {
  NATS_URL: 'nats',
  NATS_USER: 'nats-user',
  NATS_PASSWORD: 'nats-pass',
  NATS_TOKEN: 'nats-token',
  NATS_CREDS: 'nats-creds',
  NATS_NKEY: 'nats-nkey',
  NATS_CA: 'nats-tls-ca',
  NATS_CERT: 'nats-tls-cert',
  NATS_KEY: 'nats-tls-key',
};

/** `flags` with the NATS settings the environment gives and the flags do not. */
export function withNatsEnv<F extends Flags>(flags: F, env: Record<string, string | undefined>): F {
  const out: Flags = { ...flags };
  for (const [name, flag] of Object.entries(NATS_ENV)) {
    const value = env[name];
    if (out[flag] === undefined && value !== undefined && value !== '') out[flag] = value;
  }
  return out as F;
}
