/**
 * Command-line options shared by the subcommands, and the one place that turns flags and a
 * --params file into validated workflow parameters.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { CloudMaskError } from '../shared/errors.ts';
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
    throw new CloudMaskError('BAD_OPTION', `--params ${file}: not YAML/JSON (${(err as Error).message})`);
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
  if (flags['per-chip']) over.per_chip = true;
  return resolveParams(over);
}

export function positiveInt(flags: Flags, name: string, fallback: number): number {
  const v = flags[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new CloudMaskError('BAD_OPTION', `--${name} must be a positive integer, got ${String(v)}`);
  return n;
}

export function defaultThreads(): number {
  return os.availableParallelism();
}

export function requireString(flags: Flags, name: string, command: string): string {
  const v = flags[name];
  if (typeof v !== 'string' || v.length === 0) throw new CloudMaskError('BAD_OPTION', `${command} needs --${name}`);
  return v;
}
