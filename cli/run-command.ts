/** `improve-cloud-mask run`: one scene, embedded by default. */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Registry } from 'prom-client';
import type { FlowGate } from '../coordinator/flow.ts';
import { runScene, type CoordinatorEvent, type SceneReport, type SceneRunOptions, type SceneTask } from '../coordinator/scene-run.ts';
import type { ModelManifest } from '../shared/manifest.ts';
import type { WorkflowParams } from '../shared/params.ts';
import type { CoordinatorTransport } from '../shared/transport.ts';
import { inspectModel, resolveModelPath } from '../worker/models.ts';
import { JetStreamCoordinatorTransport } from '../transport/jetstream.ts';
import { createCoordinatorMetrics } from '../coordinator/metrics.ts';
import { createWorkerMetrics, type WorkerMetrics } from '../worker/metrics.ts';
import { openCluster } from './cluster.ts';
import { startMetrics } from './metrics-server.ts';
import { startEmbedded } from './embedded.ts';
import { checkNumericFlags, chipsPerJobFromFlags, httpHeadersFromFlags, maxInFlightFromFlags, paramsFromFlags, requireString, threadsFromFlags, type Flags } from './options.ts';
import type { CliEnv } from './env.ts';
import { checkOutputPaths, createOutputFolders, inputFiles } from './output-checks.ts';
import { checkOutputsFree, plannedOutputs } from './outputs.ts';
import type { OutputWriter } from '../coordinator/outputs.ts';
import { formatDuration, Progress } from './progress.ts';
import { watchWorkers, type WorkerWatch } from './worker-watch.ts';
import { closeWithin } from '../transport/connect.ts';

export type { CliEnv };

/** The models' manifests, checked as the workers check them. */
export type PairManifests = { cloud: ModelManifest; shadow: ModelManifest };

/**
 * Checks both models load and match their manifests before any chip is planned; the coordinator
 * plans the inference domain from these manifests.
 */
export async function preflightModels(params: WorkflowParams, modelsDir: string): Promise<PairManifests> {
  const cloud = await inspectModel(params.cloud_model, 'cloud', modelsDir);
  const shadow = await inspectModel(params.shadow_model, 'shadow', modelsDir);
  return { cloud, shadow };
}

export type ModelDigests = NonNullable<SceneRunOptions['models']>;

/** The models' sha256, which the outputs' STAC items record (read once per command). */
export async function modelDigests(params: WorkflowParams, modelsDir: string): Promise<ModelDigests> {
  const digest = async (file: string): Promise<{ file: string; sha256: string }> => ({
    file,
    sha256: createHash('sha256').update(await readFile(resolveModelPath(file, modelsDir))).digest('hex'),
  });
  return { cloud: await digest(params.cloud_model), shadow: await digest(params.shadow_model) };
}

/** Turns coordinator events into progress lines and warnings. */
export function progressHandler(env: CliEnv, label: (input: string) => string): (e: CoordinatorEvent) => void {
  const bars = new Map<string, { bar: Progress; done: number; resumed: number }>();
  return (e) => {
    if (e.type === 'scene-start') {
      bars.set(e.runKey, { bar: new Progress(label(e.input), e.chips, process.stderr, env.quiet, env.logger), done: e.resumed, resumed: e.resumed });
      if (e.resumed > 0) env.log(`resuming ${e.input}: ${e.resumed} of ${e.chips} chips already done`);
    } else if (e.type === 'chip-done' && !e.duplicate && !e.replayed) {
      const b = bars.get(e.runKey);
      if (b) b.bar.update(++b.done, b.resumed);
    } else if (e.type === 'warning') {
      env.log(`warning: ${e.message}`);
    } else if (e.type === 'scene-done' || e.type === 'scene-failed') {
      bars.delete(e.runKey);
    }
  };
}

/** The summary's text form; `outputs` are every file the run wrote, the mask first. */
export function summary(report: SceneReport, outputs: string[] = [report.output]): string {
  return [
    `done: ${report.input}`,
    `  output          ${outputs[0]} (${report.width}x${report.height})`,
    ...outputs.slice(1).map((f) => `  also wrote      ${f}`),
    `  chips           ${report.chips} (${report.skippedChips} all-nodata, ${report.resumedChips} from before a restart)`,
    `  models ran on   ${report.inferenceDomain}`,
    `  time            ${formatDuration(report.seconds)} (${report.seconds.toFixed(2)} s)`,
    `  cloud fraction  ${(100 * report.cloudFraction).toFixed(2)} %`,
    `  product mask    ${report.productMask.source}${report.productMask.href ? ` (${report.productMask.href})` : ''}`,
  ].join('\n');
}

export function sceneTaskFromFlags(flags: Flags): SceneTask {
  return {
    input: requireString(flags, 's2-raster', 'run'),
    // The product's own mask unless told otherwise (SCL, with a warning, where it has none).
    productMask: typeof flags['product-mask'] === 'string' && flags['product-mask'] !== '' ? flags['product-mask'] : 'product',
    out: requireString(flags, 'out', 'run'),
    classes: flags.classes as string | undefined,
    probabilities: flags.probabilities as string | undefined,
    quicklook: flags.quicklook as string | undefined,
  };
}

/** The folders a task's outputs go in. */
function outputFolders(task: SceneTask): string[] {
  const files = [task.out, task.classes, task.quicklook].filter((p): p is string => Boolean(p));
  const folders = files.map((f) => path.dirname(path.resolve(f)));
  if (task.probabilities) folders.push(task.probabilities);
  return folders;
}

/** Refuses outputs that are inputs or share a path, before any work. */
export function checkTaskPaths(task: SceneTask): void {
  const outputs = plannedOutputs(task).map((o) => ({ flag: `--${o.option}`, file: o.file }));
  checkOutputPaths(outputs, [...inputFiles('--s2-raster', task.input), ...inputFiles('--product-mask', task.productMask)]);
}

/** Runs one scene on a given transport (embedded or NATS). */
export async function runOne(
  task: SceneTask,
  transport: CoordinatorTransport,
  params: WorkflowParams,
  flags: Flags,
  env: CliEnv,
  extras: { manifests?: PairManifests; globalGate?: FlowGate; publishTurn?: FlowGate; onEvent?: (e: CoordinatorEvent) => void; models?: ModelDigests; outputs?: OutputWriter } = {},
): Promise<SceneReport> {
  const removeFolders = await createOutputFolders(outputFolders(task));
  const progress = progressHandler(env, (input) => path.basename(input));
  const run = runScene(task, transport, {
    params,
    maxInFlight: maxInFlightFromFlags(flags, 32),
    inlinePixels: Boolean(flags['inline-pixels']),
    http: { headers: httpHeadersFromFlags(flags, env.httpHeaderLines ?? []) },
    chipsPerJob: chipsPerJobFromFlags(flags),
    manifests: extras.manifests,
    globalGate: extras.globalGate,
    publishTurn: extras.publishTurn,
    models: extras.models,
    outputs: extras.outputs,
    onEvent: (e) => {
      progress(e);
      extras.onEvent?.(e);
    },
  });
  // A failed run leaves no folder it made (its files are already gone: temp names, renamed last).
  return run.catch(async (err: unknown) => {
    await removeFolders();
    throw err;
  });
}

/** What a coordinator command runs with: its transport and the event sink for its metrics. */
export interface CoordinatorContext {
  transport: CoordinatorTransport;
  onEvent: (e: CoordinatorEvent) => void;
  /** The NATS connection with --nats (the scene queue shares it), else null. */
  nc: NatsConnection | null;
  /** Where further metrics register (the archive tier's). */
  registry: Registry;
}

/**
 * Runs `fn` with the coordinator's transport: JetStream when --nats is given (workers are other
 * processes), else the embedded worker node in this process. Serves metrics when asked, and
 * with --keep-serving keeps serving them after the work until SIGTERM.
 */
export async function withCoordinator<T>(flags: Flags, env: CliEnv, modelsDir: string, fn: (ctx: CoordinatorContext) => Promise<T>): Promise<T> {
  const metrics = await startMetrics(flags, env.log);
  let watch: WorkerWatch | null = null;
  try {
    let result: T;
    if (typeof flags.nats === 'string') {
      const { nc, js } = await openCluster(flags, `icm-coordinator-${process.pid}`, env.log);
      try {
        const transport = new JetStreamCoordinatorTransport(nc, js);
        const m = createCoordinatorMetrics(metrics.registry, () => transport.pending());
        // Every ack wait without a worker taking a job, say so.
        watch = watchWorkers(() => transport.workerActivity(), js.ackWaitMs ?? 30_000, env.log);
        const w = watch;
        metrics.setReady(true);
        result = await fn({ transport, onEvent: (e) => (m.onEvent(e), w.onEvent(e)), nc, registry: metrics.registry });
        // Still connected while serving: the queue lag stays current on the dashboard.
        if (flags['keep-serving'] && metrics.url) await serveUntilSignal(env, metrics.url);
      } finally {
        watch?.stop();
        await closeWithin(nc, 5000);
      }
    } else {
      const threads = threadsFromFlags(flags);
      let workerMetrics: WorkerMetrics | null = null;
      const httpHeaders = httpHeadersFromFlags(flags, env.httpHeaderLines ?? []);
      const embedded = startEmbedded({ threads, modelsDir, httpHeaders, onWorkerEvent: (e) => workerMetrics?.onEvent(e) });
      workerMetrics = createWorkerMetrics(metrics.registry, embedded.pool);
      const m = createCoordinatorMetrics(metrics.registry, () => embedded.transport.pending());
      metrics.setReady(true);
      try {
        result = await fn({ transport: embedded.transport, onEvent: m.onEvent, nc: null, registry: metrics.registry });
        if (flags['keep-serving'] && metrics.url) await serveUntilSignal(env, metrics.url);
      } finally {
        await embedded.close();
      }
    }
    return result;
  } finally {
    await metrics.close();
  }
}

function serveUntilSignal(env: CliEnv, url: string): Promise<void> {
  env.log(`work done; still serving ${url}/metrics until SIGTERM`);
  return new Promise((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
}

export async function runCommand(flags: Flags, env: CliEnv): Promise<number> {
  const task = sceneTaskFromFlags(flags);
  checkNumericFlags(flags);
  // An output that is an input is refused even with --overwrite; then existing outputs need it.
  checkTaskPaths(task);
  const outputs = plannedOutputs(task).map((o) => o.file);
  checkOutputsFree(plannedOutputs(task), Boolean(flags.overwrite));
  const params = paramsFromFlags(flags);
  httpHeadersFromFlags(flags, env.httpHeaderLines ?? []); // a malformed header fails before any work
  const modelsDir = (flags['models-dir'] as string | undefined) ?? env.modelsDir;
  // The models are checked while the coordinator starts (an embedded run's chip threads load
  // meanwhile); no chip is planned before the check passes, and a model that fails it is the
  // error reported, whatever else failed meanwhile.
  // The digests are read after the check, so that a missing model is its BAD_MODEL and not
  // the digest's ENOENT, whichever file read finishes first.
  const checked = preflightModels(params, modelsDir).then(async (manifests) => [manifests, await modelDigests(params, modelsDir)] as const);
  checked.catch(() => {});
  const report = await withCoordinator(flags, env, modelsDir, async ({ transport, onEvent }) => {
    const [manifests, models] = await checked;
    return runOne(task, transport, params, flags, env, { manifests, onEvent, models });
  }).catch(async (err: unknown) => {
    await checked;
    throw err;
  });
  if (flags.json) process.stdout.write(`${JSON.stringify({ ...report, outputs }, null, 2)}\n`);
  else env.logger.event('summary', { ...report, outputs }, summary(report, outputs));
  return 0;
}
