/**
 * The `improve-cloud-mask` command. Environment variables are read here, once.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { asCloudMaskError } from '../shared/errors.ts';
import { describeWorkflow } from '../shared/params.ts';
import { defaultModelsDir } from '../worker/models.ts';
import { batchCommand } from './batch-command.ts';
import { splitHeaderLines } from './options.ts';
import { runCommand, type CliEnv } from './run-command.ts';
import { workerCommand } from './worker-command.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const USAGE = `improve-cloud-mask: FarmVibes-compatible Sentinel-2 cloud and shadow masks

Usage:
  improve-cloud-mask run --s2-raster PATH|URL [--product-mask product|scl|none|PATH] --out FILE [options]
  improve-cloud-mask batch (--manifest FILE | --stac FILE|URL | --stac-api URL) --out-dir DIR [--nats URL] [options]
  improve-cloud-mask worker --nats URL [--threads N] [--allow-root DIR|URL_PREFIX ...]
  improve-cloud-mask submit --nats URL --archive NAME --out-dir DIR (--manifest FILE | --stac FILE|URL | --stac-api URL) [options]
  improve-cloud-mask coordinator --nats URL [--scenes-in-flight N] [--metrics-port P]
  improve-cloud-mask status NAME --nats URL [--json]
  improve-cloud-mask report NAME --nats URL [--out FILE]
  improve-cloud-mask demo [--out-dir DIR]       run on the real sample scene (../shared/data/s2-l2a-29RKH)
  improve-cloud-mask describe                   sources, sinks, parameters and defaults
  improve-cloud-mask evaluate                   model metrics on held-out human labels and vs Sen2Cor SCL

Run options:
  --product-mask M       product (default): the product's own mask, MSK_CLASSI_B00 (opaque + cirrus)
                         or MSK_CLOUDS_B00.gml (OPAQUE + CIRRUS), SCL with a warning where the input
                         has neither; scl: SCL classes 3, 8, 9, 10; none; or a GeoTIFF on the grid
  --cloud-thr X          cloud when probability > X (default 0.3)
  --shadow-thr X         shadow when probability > X (default 0.2)
  --cloud-model NAME     cloud model file in the models directory
  --shadow-model NAME    shadow model file in the models directory
  --models-dir DIR       where model names resolve (default: the repo's models/, or $ICM_MODELS_DIR)
  --in-memory            read the whole scene once instead of window by window
  --harmonize            subtract the baseline-04.00 +1000 DN offset before the models
  --min-area N           remove clouds and fill holes smaller than N pixels (default 0 = off)
  --per-chip             run the models over every whole 512x512 chip, as FarmVibes (default: only
                         over each chip's write window plus the models' margin where their manifests
                         allow it; the same masks bit for bit, about half the inference)
  --threads N            inference threads (default: all cores)
  --classes FILE         also write a classes raster (0 clear, 1 cloud, 2 shadow, 3 product-only, 4 nodata, 5 buffer)
  --probabilities DIR    also write cloud_probability.tif and shadow_probability.tif
  --quicklook FILE.png   also write an RGB quick-look with cloud and shadow drawn over it
  --params FILE          YAML/JSON with the workflow's parameter names (flags win)
  --max-in-flight N      chips in flight per scene (default 32)
  --chips-per-job N      neighbouring chips of a row per job, their window read once (default 4, max 8)
  --http-header 'N: V'   sent on every http(s) request (STAC item, range reads, masks); repeatable,
                         also $ICM_HTTP_HEADERS (newline-separated); never logged nor put in jobs
  --json                 print the report as JSON
  --quiet                no progress lines

Cluster options (run, batch, worker):
  --nats URL             coordinate through NATS JetStream (comma-separated servers); without it,
                         run and batch use the embedded in-process worker
  --nats-user U --nats-pass P | --nats-token T | --nats-creds FILE | --nats-nkey FILE
  --nats-tls-ca FILE [--nats-tls-cert FILE --nats-tls-key FILE]
  --nats-prefix P        subject/stream prefix (default icm)
  --inline-pixels        coordinator ships pixels in the jobs (workers that cannot reach the source)
  --ack-wait-ms N        redelivery deadline of a silent worker (default 30000)
  --max-deliveries N     deliveries before a failing chip is dead-lettered (default 4)
Metrics (run, batch, worker):
  --metrics-port P       serve /metrics, /healthz, /readyz on this port (0 = any free port)
  --metrics-host H       address to listen on (default 127.0.0.1)
  --keep-serving         run/batch: keep serving metrics after the work, until SIGTERM
Batch options:
  --manifest FILE        scenes: one per line ("INPUT [PRODUCT_MASK]") or JSON [{input, product_mask}]
  --stac FILE|URL        or: the items of a static STAC catalog, collection or ItemCollection (links walked)
  --stac-api URL         or: a STAC API item search (POST /search, every page)
    --collection C       collections to search (repeatable or comma-separated)
    --bbox=W,S,E,N       in degrees (write it with "=": W may be negative)
    --datetime RANGE     e.g. 2020-01-01/2020-12-31 (RFC 3339, ".." for open ends)
    --max-cloud-cover N  items with eo:cloud_cover above N (0-100) are left out (--stac too)
    --limit N            at most N scenes (--stac too)
  --out-dir DIR          one <scene>.tif per scene, plus report.json
  --scenes-in-flight N   scenes open at once (default 2; they publish their jobs one after the other)
  --force                recompute scenes whose output already exists with the same parameters
Archive options (submit, coordinator, status, report; batch too):
  --archive NAME         the archive's name in the scene queue (batch: derived from --out-dir)
  --scene-ack-wait-ms N  a scene whose coordinator went silent goes to another after N ms (default 60000)
  --scene-max-deliveries N  deliveries of a scene failing with a retryable error (default 3)
  --coordinator-id ID    coordinator: name in scene records and status (default host-pid)
  --out FILE             report: where report.json goes (default <archive out-dir>/report.json)
  A scene is queued once per input + parameters: submitting again queues nothing done, skipped,
  queued or running (failed scenes are queued again; --force queues every scene not running).
  coordinator: SIGTERM stops pulling and finishes the scenes in flight; a second one hands them back.
Worker options:
  --allow-root DIR|URL   sources jobs may read (repeatable; default: the current directory)
  --http-header 'N: V'   headers for the http(s) sources jobs name (repeatable; $ICM_HTTP_HEADERS too)
  --worker-id ID         name in results and logs (default host-pid)
  --log-chips            print one line per finished chip on stdout
`;

export const OPTIONS = {
  's2-raster': { type: 'string' },
  'product-mask': { type: 'string' },
  out: { type: 'string' },
  'out-dir': { type: 'string' },
  'cloud-thr': { type: 'string' },
  'shadow-thr': { type: 'string' },
  'cloud-model': { type: 'string' },
  'shadow-model': { type: 'string' },
  'models-dir': { type: 'string' },
  'in-memory': { type: 'boolean' },
  harmonize: { type: 'boolean' },
  'per-chip': { type: 'boolean' },
  'min-area': { type: 'string' },
  threads: { type: 'string' },
  classes: { type: 'string' },
  probabilities: { type: 'string' },
  quicklook: { type: 'string' },
  params: { type: 'string' },
  'max-in-flight': { type: 'string' },
  'chips-per-job': { type: 'string' },
  'inline-pixels': { type: 'boolean' },
  json: { type: 'boolean' },
  manifest: { type: 'string' },
  stac: { type: 'string' },
  'stac-api': { type: 'string' },
  collection: { type: 'string', multiple: true },
  bbox: { type: 'string' },
  datetime: { type: 'string' },
  'max-cloud-cover': { type: 'string' },
  limit: { type: 'string' },
  'scenes-in-flight': { type: 'string' },
  force: { type: 'boolean' },
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
  'allow-root': { type: 'string', multiple: true },
  'http-header': { type: 'string', multiple: true },
  'worker-id': { type: 'string' },
  'log-chips': { type: 'boolean' },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  'keep-serving': { type: 'boolean' },
  quiet: { type: 'boolean' },
  archive: { type: 'string' },
  'scene-ack-wait-ms': { type: 'string' },
  'scene-max-deliveries': { type: 'string' },
  'coordinator-id': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export function sampleSceneDir(): string {
  return process.env.ICM_SAMPLE_DIR ?? path.resolve(REPO_ROOT, '..', 'shared', 'data', 's2-l2a-29RKH');
}

export async function main(argv: string[]): Promise<number> {
  const env: CliEnv = {
    modelsDir: process.env.ICM_MODELS_DIR ?? defaultModelsDir(),
    log: (line) => process.stderr.write(`${line}\n`),
    quiet: false,
    httpHeaderLines: splitHeaderLines(process.env.ICM_HTTP_HEADERS ?? ''),
  };
  const [command, ...rest] = argv;
  try {
    if (!command || command === 'help' || command === '--help' || command === '-h') {
      process.stdout.write(USAGE);
      return command ? 0 : 2;
    }
    // Only status and report take a positional (the archive's name).
    const positional = command === 'status' || command === 'report';
    const { values: flags, positionals } = parseArgs({ args: rest, options: OPTIONS, strict: true, allowPositionals: positional });
    env.quiet = Boolean(flags.quiet);
    if (flags.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    switch (command) {
      case 'run':
        return await runCommand(flags, env);
      case 'demo': {
        const outDir = flags['out-dir'] ?? path.join(REPO_ROOT, 'out', 'demo');
        const sample = sampleSceneDir();
        env.log(`demo: improve_cloud_mask on the real sample scene ${sample} (product mask from SCL), embedded mode`);
        return await runCommand(
          {
            ...flags,
            's2-raster': sample,
            'product-mask': 'scl',
            out: path.join(outDir, 'mask.tif'),
            classes: path.join(outDir, 'classes.tif'),
            quicklook: path.join(outDir, 'quicklook.png'),
          },
          env,
        );
      }
      case 'worker':
        return await workerCommand(flags, env);
      case 'batch':
        return await batchCommand(flags, env);
      case 'submit':
        return await (await import('./archive-commands.ts')).submitCommand(flags, env);
      case 'coordinator':
        return await (await import('./archive-commands.ts')).coordinatorCommand(flags, env);
      case 'status':
        return await (await import('./archive-commands.ts')).statusCommand(flags, positionals, env);
      case 'report':
        return await (await import('./archive-commands.ts')).reportCommand(flags, positionals, env);
      case 'describe':
        process.stdout.write(`${describeWorkflow()}\n`);
        return 0;
      case 'evaluate': {
        const { evaluateModels, formatEvalTable } = await import('../scripts/lib/evaluate.ts');
        process.stdout.write(`${formatEvalTable(await evaluateModels({ modelsDir: env.modelsDir }))}\n`);
        return 0;
      }
      default:
        process.stderr.write(`improve-cloud-mask: unknown command '${command}'\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const e = asCloudMaskError(err);
    const known = (err as { code?: string }).code;
    if (typeof known === 'string' && known.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`improve-cloud-mask: ${(err as Error).message} (see --help)\n`);
      return 2;
    }
    process.stderr.write(`improve-cloud-mask: error [${e.code}]: ${e.message}\n`);
    return e.exitCode;
  }
}
