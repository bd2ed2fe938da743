/**
 * `improve-cloud-mask batch`: an archive in one command. It goes through the scene queue like
 * the cluster does: submit (a scene already done or queued in this archive is not queued again),
 * serve (this process is a coordinator: scenes a few at a time with a shared bound on chips in
 * flight, publishing one scene after the other), wait until every scene it queued is finished.
 * Embedded, the queue is in process; with --nats it is JetStream's, and other coordinators may
 * take part. A scene whose output exists with the same parameter hash is skipped; one failing
 * scene does not stop the others. Ends with report.json and collection.json (a STAC collection
 * of the scenes' items).
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { serveScenes } from '../coordinator/scene-service.ts';
import { itemPathFor, writeStacCollection } from '../coordinator/stac.ts';
import type { WorkflowParams } from '../shared/params.ts';
import type { SceneJob, SceneRecord } from '../shared/scene-jobs.ts';
import type { SceneQueue } from '../shared/transport.ts';
import type { ArchiveScene } from '../shared/archive.ts';
import { CloudMaskError, fsReason } from '../shared/errors.ts';
import { checkNumericFlags, httpHeadersFromFlags, paramsFromFlags, requireString, scenesInFlightFromFlags, type Flags } from './options.ts';
import { checkOutputPaths, createOutputFolders, inputFiles } from './output-checks.ts';
import { plannedOutputs } from './outputs.ts';
import { formatDuration } from './progress.ts';
import type { CliEnv } from './env.ts';
import { preflightModels, withCoordinator, type CoordinatorContext } from './run-command.ts';
import { archiveNameFromFlags, openSceneQueue, outputIsCurrent, sceneJobs, scenesFromFlags, sceneRunner } from './scene-runner.ts';

export interface SceneOutcome {
  input: string;
  output: string;
  status: 'done' | 'skipped' | 'failed';
  reason: string | null;
  chips: number | null;
  seconds: number | null;
  cloudFraction: number | null;
  /** Where the product mask came from (MSK_CLASSI_B00, MSK_CLOUDS_B00.gml, SCL, file, none); null unless done. */
  productMask: string | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const finished = (r: SceneRecord | undefined): boolean => r !== undefined && (r.state === 'done' || r.state === 'skipped' || r.state === 'failed');

/** Waits until every scene this submission queued has a finished record (any coordinator's). */
async function waitForScenes(queue: SceneQueue, archive: string, keys: Set<string>, env: CliEnv, nudge: { wake: (() => void) | null }): Promise<Map<string, SceneRecord>> {
  let lastLine = '';
  for (;;) {
    const byKey = new Map((await queue.records(archive)).map((r) => [r.key, r]));
    const mine = [...keys].map((k) => byKey.get(k));
    const done = mine.filter(finished).length;
    const failed = mine.filter((r) => r?.state === 'failed').length;
    const skipped = mine.filter((r) => r?.state === 'skipped').length;
    const line = `archive ${archive}: ${done}/${keys.size} scenes finished (${failed} failed, ${skipped} skipped)`;
    if (line !== lastLine) env.logger.event('progress', { archive, done, total: keys.size, failed, skipped }, (lastLine = line));
    if (mine.every(finished)) return byKey;
    await Promise.race([sleep(1000), new Promise<void>((r) => (nudge.wake = r))]);
    nudge.wake = null;
  }
}

/** No scene's output (nor report.json) may be one of the archive's inputs. */
function checkBatchPaths(scenes: ArchiveScene[], outDir: string): void {
  const outputs = [
    ...scenes.flatMap((s) => plannedOutputs({ out: path.join(outDir, `${s.name}.tif`) }).map((o) => ({ flag: `--out-dir (scene ${s.name})`, file: o.file }))),
    { flag: '--out-dir (report)', file: path.join(outDir, 'report.json') },
  ];
  const inputs = scenes.flatMap((s) => [...inputFiles(`scene ${s.name}`, s.input), ...inputFiles(`scene ${s.name} product mask`, s.productMask)]);
  checkOutputPaths(outputs, inputs);
}

function outcome(job: SceneJob, r: SceneRecord | undefined, queuedNow: boolean): SceneOutcome {
  const base = { input: job.input, output: job.out, chips: r?.chips ?? null, seconds: r?.seconds ?? null, cloudFraction: r?.cloudFraction ?? null, productMask: r?.state === 'done' ? (r.productMask ?? null) : null };
  // Done before this submission: nothing was run for it now.
  if (!queuedNow && r?.state === 'done') return { ...base, status: 'skipped', reason: 'done in an earlier submission of this archive', chips: null, seconds: null, cloudFraction: null, productMask: null };
  const status = r?.state === 'done' || r?.state === 'failed' ? r.state : 'skipped';
  return { ...base, status, reason: r?.reason ?? null };
}

/** The out-dir's STAC collection: every scene whose output (and so its item) exists. */
async function writeCollection(outDir: string, where: string, outcomes: SceneOutcome[]): Promise<string> {
  const items = outcomes.filter((o) => o.status !== 'failed').map((o) => itemPathFor(o.output)).filter((p) => existsSync(p));
  return writeStacCollection(outDir, {
    id: path.basename(path.resolve(outDir)),
    description: `Cloud and cloud-shadow masks (improve-cloud-mask) of the ${outcomes.length} scenes of ${where}`,
    items,
  });
}

async function processArchive(jobs: SceneJob[], archive: string, source: string, outDir: string, ctx: CoordinatorContext, params: WorkflowParams, flags: Flags, env: CliEnv, modelsDir: string): Promise<SceneOutcome[]> {
  const queue = await openSceneQueue(ctx, flags);
  const now = Date.now();
  const { queued, notQueued } = await queue.submit({ name: archive, params, outDir: path.resolve(outDir), source, createdAt: now, submittedAt: now }, jobs);
  // Waited for: what this submission queued, and what an earlier one (a killed batch of the same
  // command) left queued or running: its jobs come back to this process after the scene ack wait.
  const unfinished = notQueued.filter((r) => r.state === 'queued' || r.state === 'running');
  const queuedKeys = new Set([...queued, ...unfinished].map((r) => r.key));
  const nudge: { wake: (() => void) | null } = { wake: null };
  const runner = sceneRunner(ctx, flags, env, modelsDir);
  const service = serveScenes(queue, {
    coordinator: `batch-${process.pid}`,
    scenesInFlight: scenesInFlightFromFlags(flags),
    run: runner.run,
    alreadyDone: outputIsCurrent,
    log: env.log,
    onEvent: () => nudge.wake?.(),
  });
  try {
    const byKey = await waitForScenes(queue, archive, queuedKeys, env, nudge);
    return jobs.map((j) => outcome(j, byKey.get(j.key), queuedKeys.has(j.key)));
  } finally {
    service.stop();
    await service.done;
    await runner.close();
  }
}

export async function batchCommand(flags: Flags, env: CliEnv): Promise<number> {
  const outDir = requireString(flags, 'out-dir', 'batch');
  checkNumericFlags(flags);
  const params = paramsFromFlags(flags);
  httpHeadersFromFlags(flags, env.httpHeaderLines ?? []); // a malformed header fails before any work
  const { scenes, skipped, source } = await scenesFromFlags(flags, 'batch', env);
  const modelsDir = (flags['models-dir'] as string | undefined) ?? env.modelsDir;
  checkBatchPaths(scenes, outDir);
  await preflightModels(params, modelsDir);
  await createOutputFolders([outDir]);
  const archive = archiveNameFromFlags(flags, outDir);
  const jobs = sceneJobs(archive, scenes, outDir, params, Boolean(flags.force));
  env.log(`batch: ${scenes.length} scenes from ${source} -> ${outDir} (archive ${archive})`);
  const started = performance.now();
  const outcomes = await withCoordinator(flags, env, modelsDir, (ctx) => processArchive(jobs, archive, source, outDir, ctx, params, flags, env, modelsDir));
  const summary = {
    source,
    archive,
    params,
    seconds: (performance.now() - started) / 1000,
    done: outcomes.filter((o) => o.status === 'done').length,
    skipped: outcomes.filter((o) => o.status === 'skipped').length,
    failed: outcomes.filter((o) => o.status === 'failed').length,
    scenes: outcomes,
    /** Items the discovery found but could not use (STAC sources). */
    discoverySkipped: skipped,
  };
  const collection = await writeCollection(outDir, source, outcomes);
  const reportPath = path.join(outDir, 'report.json');
  try {
    await writeFile(`${reportPath}.tmp`, `${JSON.stringify(summary, null, 2)}\n`);
    await rename(`${reportPath}.tmp`, reportPath);
  } catch (err) {
    throw new CloudMaskError('OUTPUT_FAILED', `cannot write ${reportPath}: ${fsReason(err)}`, { cause: err });
  }
  const counts = { done: summary.done, skipped: summary.skipped, failed: summary.failed, seconds: summary.seconds };
  const written = outcomes.filter((o) => o.status === 'done').flatMap((o) => [o.output, itemPathFor(o.output)]);
  env.logger.event('summary', { ...counts, report: reportPath, outputs: [...written, reportPath, collection] }, `batch: ${summary.done} done, ${summary.skipped} skipped, ${summary.failed} failed in ${formatDuration(summary.seconds)}; report: ${reportPath}; STAC collection: ${collection}`);
  return summary.failed > 0 ? 1 : 0;
}
