/**
 * The help texts: `--help` (commands, global options, exit codes) and one text per subcommand
 * (`run --help`, ...). The exit-code list is built from the error table, so it cannot drift.
 */
import { ERROR_TABLE, type ErrorCode } from '../shared/errors.ts';
import { COMMANDS, type CommandName } from './commands.ts';

/** What each error code means to someone reading an exit status. */
const CODE_MEANING: Record<ErrorCode, string> = {
  BAD_OPTION: 'usage: unknown command or option, missing or bad value',
  INPUT_NOT_FOUND: 'an input file or URL cannot be opened',
  BAD_INPUT: 'an input is not a usable raster',
  CORRUPT_INPUT: 'a compressed tile of an input does not decode (corrupt data, not retried)',
  GRID_MISMATCH: 'the product mask is not on the scene grid',
  BAD_MODEL: 'a model is missing, a Git LFS pointer, or has the wrong shapes',
  FORBIDDEN_SOURCE: "a source lies outside a worker's --allow-root",
  BAD_MESSAGE: 'a message failed size or schema validation',
  TRANSIENT_IO: 'network or I/O trouble that outlived its retries',
  INFERENCE_FAILED: 'onnxruntime failed',
  DEAD_LETTER: 'a chip exhausted its deliveries and was dead-lettered',
  OUTPUT_FAILED: 'an output cannot be written, or exists without --overwrite',
  INTERNAL: 'unforeseen error; batch: at least one scene failed',
};

/** `0 success`, then one line per exit status with the codes that end in it. */
export function exitCodesText(): string {
  const byExit = new Map<number, ErrorCode[]>();
  for (const code of Object.keys(ERROR_TABLE) as ErrorCode[]) {
    const exit = ERROR_TABLE[code].exitCode;
    byExit.set(exit, [...(byExit.get(exit) ?? []), code]);
  }
  const lines = ['  0   success'];
  for (const exit of [...byExit.keys()].sort((a, b) => a - b)) {
    const codes = byExit.get(exit)!;
    lines.push(`  ${String(exit).padEnd(3)} ${codes.map((c) => `${c} (${CODE_MEANING[c]})`).join('; ')}`);
  }
  return lines.join('\n');
}

const GLOBAL_OPTIONS = `Options every command takes:
  -h, --help             this text, or one command's (improve-cloud-mask run --help)
  --log-format text|json log, progress and summary lines on stderr as text (default) or one JSON object per line
  --quiet                no progress lines
  --models-dir DIR       where model names resolve (default: the package's models/, or $ICM_MODELS_DIR)`;

const WORKFLOW_OPTIONS = `Workflow options:
  --cloud-thr X          cloud when probability > X (default 0.3)
  --shadow-thr X         shadow when probability > X (default 0.2)
  --cloud-model NAME     cloud model file in the models directory
  --shadow-model NAME    shadow model file in the models directory
  --in-memory            read the whole scene once instead of window by window
  --harmonize            subtract the baseline-04.00 +1000 DN offset before the models
  --min-area N           remove clouds and fill holes smaller than N pixels (default 0 = off)
  --per-chip             run the models over every whole 512x512 chip, as FarmVibes (default: only
                         over each chip's write window plus the models' margin where their manifests
                         allow it; the same masks bit for bit, about half the inference)
  --threads N            inference threads (default: all cores; at most 4 per core)
  --params FILE          YAML/JSON with the workflow's parameter names (flags win)
  --max-in-flight N      chips in flight per scene (default 32, at most 1024)
  --chips-per-job N      neighbouring chips of a row per job, their window read once (default 4, max 8)
  --http-header 'N: V'   sent on every http(s) request (STAC item, range reads, masks); repeatable,
                         also $ICM_HTTP_HEADERS (newline-separated); never logged nor put in jobs
  --json                 print the report as JSON on stdout`;

const OUTPUT_OPTIONS = `Outputs (an existing one is an error before any work, unless --overwrite):
  --classes FILE         also write a classes raster (0 clear, 1 cloud, 2 shadow, 3 product-only, 4 nodata, 5 buffer;
                         colour table, class names in FILE.aux.xml)
  --probabilities DIR    also write cloud_probability.tif and shadow_probability.tif
  --quicklook FILE.png   also write an RGB quick-look with cloud and shadow drawn over it
  --overwrite            replace outputs that already exist`;

const NATS_OPTIONS = `Cluster options:
  --nats URL             coordinate through NATS JetStream (comma-separated servers)
  --nats-user U --nats-pass P | --nats-token T | --nats-creds FILE | --nats-nkey FILE
  --nats-tls-ca FILE [--nats-tls-cert FILE --nats-tls-key FILE]
                         or, better for secrets (flags show in ps), the environment as the nats
                         CLI names it: NATS_URL, NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_CREDS,
                         NATS_NKEY, NATS_CA, NATS_CERT, NATS_KEY (flags win)
  --nats-prefix P        subject/stream prefix (default icm)
  --ack-wait-ms N        redelivery deadline of a silent worker (default 30000, at most 3600000);
                         also how long a stopping worker waits for its chips before handing them
                         back, how often a coordinator whose jobs nobody takes says so, and the
                         lease of a worker's lanes (set by the first process on a fresh server)
  --max-deliveries N     deliveries before a failing chip is dead-lettered (default 4, at most 100)`;

const COORDINATOR_OPTIONS = `${NATS_OPTIONS}
  --inline-pixels        ship pixels in the jobs (workers that cannot reach the source)
  (without --nats the work runs in this process: the embedded worker)
Metrics:
  --metrics-port P       serve /metrics, /healthz, /readyz on this port (0 = any free port)
  --metrics-host H       address to listen on (default 127.0.0.1)
  --keep-serving         keep serving metrics after the work, until SIGTERM`;

const ARCHIVE_OPTIONS = `Scene queue options:
  --archive NAME         the archive's name in the scene queue ([A-Za-z0-9_-]; batch: derived from --out-dir)
  --scene-ack-wait-ms N  a scene whose coordinator went silent goes to another after N ms (default 60000)
  --scene-max-deliveries N  deliveries of a scene failing with a retryable error (default 3)`;

/** Where an archive's scenes come from (batch and submit). */
const SCENE_SOURCE_FLAGS = `  --manifest FILE        one scene per line ("INPUT [PRODUCT_MASK]") or JSON [{input, product_mask}]
  --stac FILE|URL        or: the items of a static STAC catalog, collection or ItemCollection (links walked)
  --stac-api URL         or: a STAC API item search (POST /search, every page)
    --collection C       collections to search (repeatable or comma-separated)
    --bbox=W,S,E,N       in degrees (write it with "=": W may be negative)
    --datetime RANGE     e.g. 2020-01-01/2020-12-31 (RFC 3339, ".." for open ends)
    --max-cloud-cover N  items with eo:cloud_cover above N (0-100) are left out (--stac too)
    --limit N            at most N scenes (--stac too)`;

const SCENE_SOURCES = `${SCENE_SOURCE_FLAGS}
  --out-dir DIR          where the masks go (the same shared volume for every coordinator)
  --product-mask M       product mask of scenes that name none (default product)`;

const ARCHIVE_TEXTS = {
  submit: `Usage: improve-cloud-mask submit --nats URL --archive NAME --out-dir DIR (--manifest FILE | --stac FILE|URL | --stac-api URL) [options]

Queues an archive's scenes in JetStream (stream ICM_SCENES, records in KV icm_scenes) for any
number of coordinators. A scene is queued once per input + parameters: submitting again, even
days later, queues nothing queued, running, done or skipped; failed scenes are queued again.
${SCENE_SOURCES}
  --force                queue every scene not running, done ones too (they are recomputed)

${WORKFLOW_OPTIONS}

${NATS_OPTIONS}

${ARCHIVE_OPTIONS}`,
  coordinator: `Usage: improve-cloud-mask coordinator --nats URL [--scenes-in-flight N] [--metrics-port P]

A long-running coordinator: pulls scene jobs, runs each as run does (resuming from the results
JetStream kept when a scene comes back from a dead coordinator), heartbeats, acks a scene once its
outputs are written (merged and written on an output thread, while the next scene's results
arrive). SIGTERM: stop pulling, finish the scenes in flight; a second SIGTERM hands them back to
the queue at once.
  --scenes-in-flight N   scenes at once (default 2; they publish their jobs one after the other)
  --max-in-flight N      chips in flight per scene (default 32)
  --chips-per-job N      neighbouring chips of a row per job (default 4, max 8)
  --http-header 'N: V'   headers for http(s) sources (repeatable; $ICM_HTTP_HEADERS too)
  --coordinator-id ID    name in scene records and status (default host-pid)

${COORDINATOR_OPTIONS}

${ARCHIVE_OPTIONS}`,
  status: `Usage: improve-cloud-mask status NAME --nats URL [--json]

An archive's scenes queued, running, done, skipped and failed, the rate and ETA, the coordinators
alive, scenes per coordinator and the failed scenes with their reasons.
  --json                 the same as one JSON document (queued, running, done, skipped, failed, ...)
  --archive NAME         instead of NAME

${NATS_OPTIONS}

${ARCHIVE_OPTIONS}`,
  report: `Usage: improve-cloud-mask report NAME --nats URL [--out FILE]

Writes the archive's report.json at any time: its record, its status and every scene's record;
and, where this machine sees the output folder, the archive's STAC collection (collection.json).
  --out FILE             where it goes (default <the archive's out-dir>/report.json)
  --archive NAME         instead of NAME

${NATS_OPTIONS}

${ARCHIVE_OPTIONS}`,
};

const TEXTS: Record<CommandName, string> = {
  ...ARCHIVE_TEXTS,
  run: `Usage: improve-cloud-mask run --s2-raster PATH|URL [--product-mask product|scl|none|PATH] --out FILE [options]

One scene: cloud and shadow models over FarmVibes' chips, merged with the product mask.
  --s2-raster PATH|URL   stacked 12-band GeoTIFF, per-band COG folder, SAFE folder, STAC item, or http(s)
  --product-mask M       product (default): the product's own mask, MSK_CLASSI_B00 (opaque + cirrus)
                         or MSK_CLOUDS_B00.gml (OPAQUE + CIRRUS), SCL with a warning where the input
                         has neither; scl: SCL classes 3, 8, 9, 10; none; or a uint8 GeoTIFF on the grid
  --out FILE             the mask, a Cloud-Optimized GeoTIFF (0 clear, 1 cloud), with its STAC item
                         beside it (FILE without .tif, plus .json)

${OUTPUT_OPTIONS}

${WORKFLOW_OPTIONS}

${COORDINATOR_OPTIONS}`,
  batch: `Usage: improve-cloud-mask batch (--manifest FILE | --stac FILE|URL | --stac-api URL) --out-dir DIR [--nats URL] [options]

An archive: one <scene>.tif and its STAC item <scene>.json per scene in --out-dir, plus report.json
and collection.json (a STAC collection of the items). A scene whose output and item exist with the
same inputs and parameters is skipped. It goes through the scene queue (in process, or
with --nats JetStream's: submit + serve as one more coordinator + wait; see submit --help).
${SCENE_SOURCE_FLAGS}
  --out-dir DIR          where the masks, their STAC items, report.json and collection.json go
  --product-mask M       product mask of scenes that name none (default product)
  --scenes-in-flight N   scenes open at once (default 2, at most 16; they publish their jobs one after the other)
  --force                recompute scenes whose output already exists with the same parameters

${WORKFLOW_OPTIONS}

${COORDINATOR_OPTIONS}

${ARCHIVE_OPTIONS}`,
  worker: `Usage: improve-cloud-mask worker --nats URL [--threads N] [--allow-root DIR|URL_PREFIX ...]

A worker node: checks its models and allowed roots, then pulls chip jobs from JetStream until
SIGTERM, those of the lanes (columns of a scene) it owns first, so neighbouring jobs stay on one
worker; then it finishes the chips in flight for at most --ack-wait-ms, hands back (and names)
those still running, and drains its connection for at most 5 s.
  --threads N            inference threads (default: all cores; at most 4 per core)
  --max-in-flight N      jobs pulled ahead (default 2 x threads, at most 1024); a remote (http)
                         store wants 4 x threads: each thread then sends requests three jobs ahead
  --allow-root DIR|URL   sources jobs may read (repeatable; default: the current directory); folders
                         must exist and are compared by real path (no symlink out of a root)
  --http-header 'N: V'   headers for the http(s) sources jobs name (repeatable; $ICM_HTTP_HEADERS too)
  --cloud-model NAME     the cloud model to check before the first pull (default the bundled one;
  --shadow-model NAME    jobs name their own models, which must be in the models directory)
  --worker-id ID         name in results and logs (default host-pid)
  --log-chips            print one line per finished chip on stdout

${NATS_OPTIONS}
Metrics:
  --metrics-port P       serve /metrics, /healthz, /readyz on this port (0 = any free port)
  --metrics-host H       address to listen on (default 127.0.0.1)`,
  demo: `Usage: improve-cloud-mask demo [--out-dir DIR] [--overwrite] [options]

Runs on the real sample scene (../shared/data/s2-l2a-29RKH, or $ICM_SAMPLE_DIR) with the product
mask from SCL, embedded, and writes mask.tif, classes.tif and quicklook.png in --out-dir
(default out/demo). Rerunning needs --overwrite (npm run demo passes it).
  --out-dir DIR          where the outputs go (default out/demo)
  --overwrite            replace outputs that already exist
  --probabilities DIR    also write cloud_probability.tif and shadow_probability.tif

${WORKFLOW_OPTIONS}
Metrics:
  --metrics-port P       serve /metrics, /healthz, /readyz on this port (0 = any free port)
  --metrics-host H       address to listen on (default 127.0.0.1)`,
  describe: `Usage: improve-cloud-mask describe [--json]

The workflow's sources, sinks, tasks and parameters with their defaults.
  --json                 the same as one JSON document (parameters with type, default, description)`,
  evaluate: `Usage: improve-cloud-mask evaluate [--models-dir DIR]

Model metrics on held-out human labels and against Sen2Cor SCL.
  --models-dir DIR       evaluate the models in this directory (default: the package's models/)`,
};

export function globalHelp(): string {
  const names = Object.keys(COMMANDS) as CommandName[];
  const width = Math.max(...names.map((c) => c.length)) + 1;
  const commands = names.map((c) => `  ${c.padEnd(width)} ${COMMANDS[c].summary}`).join('\n');
  return `improve-cloud-mask: FarmVibes-compatible Sentinel-2 cloud and shadow masks

Usage: improve-cloud-mask COMMAND [options]     (improve-cloud-mask COMMAND --help for its options)
       improve-cloud-mask --version

Commands:
${commands}

${GLOBAL_OPTIONS}

Exit codes:
${exitCodesText()}
`;
}

export function commandHelp(command: CommandName): string {
  return `${TEXTS[command]}\n\n${GLOBAL_OPTIONS}\n\nExit codes: see improve-cloud-mask --help\n`;
}
