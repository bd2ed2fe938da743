/**
 * `improve-cloud-mask batch`: an archive. Scenes run a few at a time with a shared bound on
 * chips in flight (memory stays bounded whatever the archive size) and publish their jobs one
 * scene after the other (the next one plans while one runs, and runs while one merges and writes); a scene whose output exists
 * with the same parameter hash is skipped; one failing scene does not stop the others. Ends with
 * report.json and collection.json (a STAC collection of the scenes' items).
 */
import { existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FlowGate } from '../coordinator/flow.ts';
import { paramHash } from '../coordinator/run-key.ts';
import { itemPathFor, writeStacCollection } from '../coordinator/stac.ts';
import { readGeoTiffMetadata } from '../raster/geotiff-writer.ts';
import { discoverScenes } from '../coordinator/scene-discovery.ts';
import type { ArchiveScene } from '../shared/archive.ts';
import { asCloudMaskError, CloudMaskError, fsReason } from '../shared/errors.ts';
import type { WorkflowParams } from '../shared/params.ts';
import { checkNumericFlags, httpHeadersFromFlags, maxInFlightFromFlags, paramsFromFlags, requireString, sceneListFromFlags, scenesInFlightFromFlags, type Flags } from './options.ts';
import { checkOutputPaths, createOutputFolders, inputFiles } from './output-checks.ts';
import { plannedOutputs } from './outputs.ts';
import { formatDuration } from './progress.ts';
import { modelDigests, preflightModels, runOne, withCoordinator, type CliEnv, type CoordinatorContext, type ModelDigests, type PairManifests } from './run-command.ts';

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

/** The mask exists with the same parameter hash, and so does its STAC item (written after it). */
async function alreadyDone(out: string, hash: string): Promise<boolean> {
  if (!existsSync(out) || !existsSync(itemPathFor(out))) return false;
  try {
    return (await readGeoTiffMetadata(out)).ICM_PARAM_HASH === hash;
  } catch {
    return false;
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

async function processArchive(scenes: ArchiveScene[], outDir: string, ctx: CoordinatorContext, params: WorkflowParams, manifests: PairManifests, flags: Flags, env: CliEnv, models: ModelDigests): Promise<SceneOutcome[]> {
  const outcomes: SceneOutcome[] = new Array(scenes.length);
  const started = performance.now();
  const perScene = maxInFlightFromFlags(flags, 32);
  // All scenes together keep at most this many chips in flight.
  const gate = new FlowGate(perScene * 2);
  // One scene publishes at a time; the next opens and plans meanwhile (see SceneRunOptions.publishTurn).
  const publishTurn = new FlowGate(1);
  let next = 0;
  let finished = 0;
  const report = (): void => {
    const secs = (performance.now() - started) / 1000;
    const eta = finished > 0 ? formatDuration((secs / finished) * (scenes.length - finished)) : '?';
    const failed = outcomes.filter((o) => o?.status === 'failed').length;
    const skipped = outcomes.filter((o) => o?.status === 'skipped').length;
    const text = `archive: ${finished}/${scenes.length} scenes (${failed} failed, ${skipped} skipped), ${formatDuration(secs)} elapsed, ETA ${eta}`;
    env.logger.event('progress', { archive: true, done: finished, total: scenes.length, failed, skipped, elapsed_s: Math.round(secs) }, text);
  };
  const worker = async (): Promise<void> => {
    while (next < scenes.length) {
      const i = next++;
      const scene = scenes[i];
      const out = path.join(outDir, `${scene.name}.tif`);
      const base = { input: scene.input, output: out, chips: null, seconds: null, cloudFraction: null, productMask: null };
      if (!flags.force && (await alreadyDone(out, paramHash(scene.input, scene.productMask, params)))) {
        outcomes[i] = { ...base, status: 'skipped', reason: 'output exists with the same inputs and parameters' };
      } else {
        try {
          const r = await runOne({ input: scene.input, productMask: scene.productMask, out }, ctx.transport, params, flags, env, { manifests, globalGate: gate, publishTurn, onEvent: ctx.onEvent, models });
          outcomes[i] = { ...base, status: 'done', reason: null, chips: r.chips, seconds: r.seconds, cloudFraction: r.cloudFraction, productMask: r.productMask.source };
        } catch (err) {
          const e = asCloudMaskError(err);
          env.log(`scene ${scene.input} failed: [${e.code}] ${e.message}`);
          outcomes[i] = { ...base, status: 'failed', reason: `${e.code}: ${e.message}` };
        }
      }
      finished++;
      report();
    }
  };
  const lanes = Math.min(scenesInFlightFromFlags(flags), scenes.length);
  await Promise.all(Array.from({ length: lanes }, worker));
  return outcomes;
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

export async function batchCommand(flags: Flags, env: CliEnv): Promise<number> {
  const spec = sceneListFromFlags(flags, 'batch');
  const outDir = requireString(flags, 'out-dir', 'batch');
  const where = 'manifest' in spec ? spec.manifest : 'stac' in spec ? spec.stac : spec.stacApi;
  checkNumericFlags(flags);
  const params = paramsFromFlags(flags);
  const headers = httpHeadersFromFlags(flags, env.httpHeaderLines ?? []); // a malformed header fails before any work
  const defaultProductMask = typeof flags['product-mask'] === 'string' ? flags['product-mask'] : 'product';
  const { scenes, skipped } = await discoverScenes(spec, { defaultProductMask, log: env.log, headers });
  const modelsDir = (flags['models-dir'] as string | undefined) ?? env.modelsDir;
  checkBatchPaths(scenes, outDir);
  const manifests = await preflightModels(params, modelsDir);
  const models = await modelDigests(params, modelsDir);
  await createOutputFolders([outDir]);
  env.log(`batch: ${scenes.length} scenes from ${where} -> ${outDir}`);
  const started = performance.now();
  const outcomes = await withCoordinator(flags, env, modelsDir, (ctx) => processArchive(scenes, outDir, ctx, params, manifests, flags, env, models));
  const collection = await writeCollection(outDir, where, outcomes);
  const summary = {
    source: where,
    params,
    seconds: (performance.now() - started) / 1000,
    done: outcomes.filter((o) => o.status === 'done').length,
    skipped: outcomes.filter((o) => o.status === 'skipped').length,
    failed: outcomes.filter((o) => o.status === 'failed').length,
    scenes: outcomes,
    /** Items the discovery found but could not use (STAC sources). */
    discoverySkipped: skipped,
  };
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
