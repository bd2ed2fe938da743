/**
 * Command-line options shared by the subcommands, and the one place that turns flags and a
 * --params file into validated workflow parameters.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { CloudMaskError } from '../shared/errors.ts';
import { DISCOVERY_LIMITS, type SceneListSpec } from '../coordinator/scene-discovery.ts';
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

/** The archive's scene source from --manifest | --stac | --stac-api and its search options. */
export function sceneListFromFlags(flags: Flags, command: string): SceneListSpec {
  const given = (['manifest', 'stac', 'stac-api'] as const).filter((k) => typeof flags[k] === 'string' && flags[k] !== '');
  if (given.length !== 1) {
    throw new CloudMaskError('BAD_OPTION', `${command} needs exactly one of --manifest FILE, --stac FILE|URL, --stac-api URL${given.length ? ` (got ${given.map((g) => `--${g}`).join(' and ')})` : ''}`);
  }
  const searchOnly = (['collection', 'bbox', 'datetime'] as const).filter((k) => flags[k] !== undefined);
  if (given[0] !== 'stac-api' && searchOnly.length) throw new CloudMaskError('BAD_OPTION', `--${searchOnly[0]} goes with --stac-api`);
  if (given[0] === 'manifest' && (flags['max-cloud-cover'] !== undefined || flags.limit !== undefined)) {
    throw new CloudMaskError('BAD_OPTION', `--${flags.limit !== undefined ? 'limit' : 'max-cloud-cover'} goes with --stac or --stac-api`);
  }
  if (given[0] === 'manifest') return { manifest: flags.manifest as string };
  const maxCloudCover = flags['max-cloud-cover'] === undefined ? undefined : boundedNumber(flags, 'max-cloud-cover', 0, 100);
  const limit = flags.limit === undefined ? undefined : positiveInt(flags, 'limit', 0);
  if (limit !== undefined && limit > DISCOVERY_LIMITS.maxScenes) throw new CloudMaskError('BAD_OPTION', `--limit must be at most ${DISCOVERY_LIMITS.maxScenes}, got ${limit}`);
  if (given[0] === 'stac') return { stac: flags.stac as string, maxCloudCover, limit };
  const collections = (Array.isArray(flags.collection) ? flags.collection : typeof flags.collection === 'string' ? [flags.collection] : []).flatMap((c) => String(c).split(',')).map((c) => c.trim()).filter(Boolean);
  return { stacApi: flags['stac-api'] as string, collection: collections.length ? collections : undefined, bbox: parseBbox(flags.bbox), datetime: typeof flags.datetime === 'string' ? flags.datetime : undefined, maxCloudCover, limit };
}

function boundedNumber(flags: Flags, name: string, min: number, max: number): number {
  const raw = String(flags[name]).trim();
  const n = raw === '' ? NaN : Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) throw new CloudMaskError('BAD_OPTION', `--${name} must be a number from ${min} to ${max}, got '${String(flags[name])}'`);
  return n;
}

function parseBbox(v: Flags[string]): [number, number, number, number] | undefined {
  if (v === undefined) return undefined;
  const parts = String(v).split(',').map((p) => (p.trim() === '' ? NaN : Number(p)));
  const [w, s, e, n] = parts;
  const ok = parts.length === 4 && parts.every(Number.isFinite) && Math.abs(w!) <= 180 && Math.abs(e!) <= 180 && s! >= -90 && n! <= 90 && s! <= n!;
  if (!ok) throw new CloudMaskError('BAD_OPTION', `--bbox must be W,S,E,N in degrees (e.g. 5.9,45.8,10.5,47.8), got '${String(v)}'`);
  return [w!, s!, e!, n!];
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * 'Name: value' lines to a header map. `where` names the lines' origin in errors ("--http-header",
 * "ICM_HTTP_HEADERS"); an error names the entry by position and never echoes it (it may hold a secret).
 */
export function parseHttpHeaders(lines: readonly string[], where: string): Record<string, string> {
  const out: Record<string, string> = {};
  lines.forEach((line, i) => {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim() : '';
    const value = colon > 0 ? line.slice(colon + 1).trim() : '';
    if (!HEADER_NAME.test(name) || value === '' || /[\r\n\0]/.test(value)) {
      throw new CloudMaskError('BAD_OPTION', `${where} entry ${i + 1} must be 'Name: value' (a header name, a colon, a non-empty value on one line)`);
    }
    out[name] = value;
  });
  return out;
}

// Lives in env.ts, which main() can load without the heavy modules this file reaches.
export { splitHeaderLines } from './env.ts';

/**
 * The headers for http(s) sources: the environment's (read once in main) and then --http-header
 * on top (a flag wins for the same name).
 */
export function httpHeadersFromFlags(flags: Flags, envLines: readonly string[]): Record<string, string> {
  const flagged = flags['http-header'];
  const lines = Array.isArray(flagged) ? flagged : typeof flagged === 'string' ? [flagged] : [];
  return { ...parseHttpHeaders(envLines, 'ICM_HTTP_HEADERS'), ...parseHttpHeaders(lines, '--http-header') };
}
