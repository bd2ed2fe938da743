/** `improve-cloud-mask run`: one scene, embedded by default. */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { FlowGate } from '../coordinator/flow.ts';
import { runScene, type CoordinatorEvent, type SceneReport, type SceneTask } from '../coordinator/scene-run.ts';
import type { WorkflowParams } from '../shared/params.ts';
import type { CoordinatorTransport } from '../shared/transport.ts';
import { inspectModel } from '../worker/models.ts';
import { JetStreamCoordinatorTransport } from '../transport/jetstream.ts';
import { openCluster } from './cluster.ts';
import { startEmbedded } from './embedded.ts';
import { defaultThreads, paramsFromFlags, positiveInt, requireString, type Flags } from './options.ts';
import { formatDuration, Progress } from './progress.ts';

export interface CliEnv {
  modelsDir: string;
  log: (line: string) => void;
  quiet: boolean;
}

/** Checks both models load and match their manifests before any chip is planned. */
export async function preflightModels(params: WorkflowParams, modelsDir: string): Promise<void> {
  await inspectModel(params.cloud_model, 'cloud', modelsDir);
  await inspectModel(params.shadow_model, 'shadow', modelsDir);
}

/** Turns coordinator events into progress lines and warnings. */
export function progressHandler(env: CliEnv, label: (input: string) => string): (e: CoordinatorEvent) => void {
  const bars = new Map<string, { bar: Progress; done: number; resumed: number }>();
  return (e) => {
    if (e.type === 'scene-start') {
      bars.set(e.runKey, { bar: new Progress(label(e.input), e.chips, process.stderr, env.quiet), done: e.resumed, resumed: e.resumed });
      if (e.resumed > 0) env.log(`resuming ${e.input}: ${e.resumed} of ${e.chips} chips already done`);
    } else if (e.type === 'chip-done' && !e.duplicate) {
      const b = bars.get(e.runKey);
      if (b) b.bar.update(++b.done, b.resumed);
    } else if (e.type === 'warning') {
      env.log(`warning: ${e.message}`);
    } else if (e.type === 'scene-done' || e.type === 'scene-failed') {
      bars.delete(e.runKey);
    }
  };
}

export function summary(report: SceneReport): string {
  return [
    `done: ${report.input}`,
    `  output          ${report.output} (${report.width}x${report.height})`,
    `  chips           ${report.chips} (${report.skippedChips} all-nodata, ${report.resumedChips} from before a restart)`,
    `  time            ${formatDuration(report.seconds)} (${report.seconds.toFixed(2)} s)`,
    `  cloud fraction  ${(100 * report.cloudFraction).toFixed(2)} %`,
  ].join('\n');
}

export function sceneTaskFromFlags(flags: Flags): SceneTask {
  return {
    input: requireString(flags, 's2-raster', 'run'),
    productMask: requireString(flags, 'product-mask', 'run'),
    out: requireString(flags, 'out', 'run'),
    classes: flags.classes as string | undefined,
    probabilities: flags.probabilities as string | undefined,
    quicklook: flags.quicklook as string | undefined,
  };
}

async function ensureDirs(task: SceneTask): Promise<void> {
  const files = [task.out, task.classes, task.quicklook].filter((p): p is string => Boolean(p));
  for (const f of files) await mkdir(path.dirname(path.resolve(f)), { recursive: true });
  if (task.probabilities) await mkdir(task.probabilities, { recursive: true });
}

/** Runs one scene on a given transport (embedded or NATS). */
export async function runOne(task: SceneTask, transport: CoordinatorTransport, params: WorkflowParams, flags: Flags, env: CliEnv, globalGate?: FlowGate): Promise<SceneReport> {
  await ensureDirs(task);
  return runScene(task, transport, {
    params,
    maxInFlight: positiveInt(flags, 'max-in-flight', 32),
    inlinePixels: Boolean(flags['inline-pixels']),
    globalGate,
    onEvent: progressHandler(env, (input) => path.basename(input)),
  });
}

/**
 * Runs `fn` with the coordinator's transport: JetStream when --nats is given (workers are other
 * processes), else the embedded worker node in this process.
 */
export async function withTransport<T>(flags: Flags, env: CliEnv, modelsDir: string, fn: (t: CoordinatorTransport) => Promise<T>): Promise<T> {
  if (typeof flags.nats === 'string') {
    const { nc, js } = await openCluster(flags, `icm-coordinator-${process.pid}`, env.log);
    try {
      return await fn(new JetStreamCoordinatorTransport(nc, js));
    } finally {
      await nc.drain().catch(() => {});
    }
  }
  const embedded = startEmbedded({ threads: positiveInt(flags, 'threads', defaultThreads()), modelsDir });
  try {
    return await fn(embedded.transport);
  } finally {
    await embedded.close();
  }
}

export async function runCommand(flags: Flags, env: CliEnv): Promise<number> {
  const task = sceneTaskFromFlags(flags);
  const params = paramsFromFlags(flags);
  const modelsDir = (flags['models-dir'] as string | undefined) ?? env.modelsDir;
  await preflightModels(params, modelsDir);
  const report = await withTransport(flags, env, modelsDir, (transport) => runOne(task, transport, params, flags, env));
  if (flags.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else env.log(summary(report));
  return 0;
}
