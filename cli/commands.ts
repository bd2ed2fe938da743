/**
 * What each subcommand accepts: its option table (parsed strictly, so a flag another command
 * takes is a usage error here) and its one-line summary. Pure data: `--help`, `--version` and
 * `describe` read this file and load nothing heavy.
 */
import type { ParseArgsConfig } from 'node:util';

type OptionTable = NonNullable<ParseArgsConfig['options']>;

const COMMON = {
  help: { type: 'boolean', short: 'h' },
  quiet: { type: 'boolean' },
  'log-format': { type: 'string' },
  'models-dir': { type: 'string' },
} as const satisfies OptionTable;

/** Everything that shapes the masks: run, batch and demo share it. */
const WORKFLOW = {
  'cloud-thr': { type: 'string' },
  'shadow-thr': { type: 'string' },
  'cloud-model': { type: 'string' },
  'shadow-model': { type: 'string' },
  'in-memory': { type: 'boolean' },
  harmonize: { type: 'boolean' },
  'min-area': { type: 'string' },
  'per-chip': { type: 'boolean' },
  threads: { type: 'string' },
  params: { type: 'string' },
  'max-in-flight': { type: 'string' },
  'chips-per-job': { type: 'string' },
  'http-header': { type: 'string', multiple: true },
  json: { type: 'boolean' },
} as const satisfies OptionTable;

const OUTPUTS = {
  classes: { type: 'string' },
  probabilities: { type: 'string' },
  quicklook: { type: 'string' },
  overwrite: { type: 'boolean' },
} as const satisfies OptionTable;

const NATS = {
  nats: { type: 'string' },
  'nats-user': { type: 'string' },
  'nats-pass': { type: 'string' },
  'nats-token': { type: 'string' },
  'nats-creds': { type: 'string' },
  'nats-nkey': { type: 'string' },
  'nats-tls-ca': { type: 'string' },
  'nats-tls-cert': { type: 'string' },
  'nats-tls-key': { type: 'string' },
  'nats-prefix': { type: 'string' },
  'ack-wait-ms': { type: 'string' },
  'max-deliveries': { type: 'string' },
} as const satisfies OptionTable;

const METRICS = {
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
} as const satisfies OptionTable;

const COORDINATOR = { ...NATS, ...METRICS, 'inline-pixels': { type: 'boolean' }, 'keep-serving': { type: 'boolean' } } as const satisfies OptionTable;

/** The scene queue (batch, submit, coordinator, status, report). */
const ARCHIVE = {
  archive: { type: 'string' },
  'scene-ack-wait-ms': { type: 'string' },
  'scene-max-deliveries': { type: 'string' },
} as const satisfies OptionTable;

/** Where an archive's scenes come from (batch and submit). */
const SCENES = {
  manifest: { type: 'string' },
  stac: { type: 'string' },
  'stac-api': { type: 'string' },
  collection: { type: 'string', multiple: true },
  bbox: { type: 'string' },
  datetime: { type: 'string' },
  'max-cloud-cover': { type: 'string' },
  limit: { type: 'string' },
  'out-dir': { type: 'string' },
  'product-mask': { type: 'string' },
  force: { type: 'boolean' },
} as const satisfies OptionTable;

export const COMMANDS = {
  run: {
    summary: 'one scene -> a cloud mask GeoTIFF (embedded, or over NATS with --nats)',
    options: { ...COMMON, ...WORKFLOW, ...OUTPUTS, ...COORDINATOR, 's2-raster': { type: 'string' }, 'product-mask': { type: 'string' }, out: { type: 'string' } },
  },
  batch: {
    summary: 'an archive of scenes -> one mask and STAC item each, report.json, collection.json',
    options: {
      ...COMMON,
      ...WORKFLOW,
      ...COORDINATOR,
      ...SCENES,
      ...ARCHIVE,
      'scenes-in-flight': { type: 'string' },
    },
  },
  submit: {
    summary: "queue an archive's scenes in JetStream for any number of coordinators",
    options: { ...COMMON, ...WORKFLOW, ...NATS, ...SCENES, ...ARCHIVE },
  },
  coordinator: {
    summary: 'a long-running coordinator serving the scene queue',
    options: { ...COMMON, ...COORDINATOR, ...ARCHIVE, 'scenes-in-flight': { type: 'string' }, 'max-in-flight': { type: 'string' }, 'chips-per-job': { type: 'string' }, 'http-header': { type: 'string', multiple: true }, 'coordinator-id': { type: 'string' } },
  },
  status: {
    summary: "an archive's progress: queued, running, done, skipped, failed, rate, ETA",
    options: { ...COMMON, ...NATS, ...ARCHIVE, json: { type: 'boolean' } },
  },
  report: {
    summary: "an archive's report.json (status plus every scene's record), at any time",
    options: { ...COMMON, ...NATS, ...ARCHIVE, out: { type: 'string' } },
  },
  worker: {
    summary: 'a worker node pulling chip jobs from NATS JetStream',
    options: {
      ...COMMON,
      ...NATS,
      ...METRICS,
      threads: { type: 'string' },
      'max-in-flight': { type: 'string' },
      'allow-root': { type: 'string', multiple: true },
      'http-header': { type: 'string', multiple: true },
      'worker-id': { type: 'string' },
      'log-chips': { type: 'boolean' },
      'cloud-model': { type: 'string' },
      'shadow-model': { type: 'string' },
    },
  },
  demo: {
    summary: 'run on the real sample scene (../shared/data/s2-l2a-29RKH)',
    options: { ...COMMON, ...WORKFLOW, ...METRICS, 'out-dir': { type: 'string' }, overwrite: { type: 'boolean' }, probabilities: { type: 'string' } },
  },
  describe: {
    summary: 'sources, sinks, parameters and defaults (--json: machine-readable)',
    options: { ...COMMON, json: { type: 'boolean' } },
  },
  evaluate: {
    summary: 'model metrics on held-out human labels and vs Sen2Cor SCL',
    options: { ...COMMON },
  },
} as const satisfies Record<string, { summary: string; options: OptionTable }>;

export type CommandName = keyof typeof COMMANDS;

export function isCommand(name: string): name is CommandName {
  return Object.prototype.hasOwnProperty.call(COMMANDS, name);
}

/** Commands whose one positional argument is the archive's name (`status NAME`): it sets --archive. */
export const ARCHIVE_POSITIONAL: readonly CommandName[] = ['status', 'report'];

/** The option table of one subcommand, as `parseArgs` takes it. */
export function optionsFor(command: CommandName): OptionTable {
  return COMMANDS[command].options;
}
