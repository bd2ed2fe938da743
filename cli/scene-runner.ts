/**
 * What `batch` and `coordinator` share: the scene queue over the coordinator's connection (or in
 * process), a scene runner that runs a scene job exactly as `run` does (one flow bound and one
 * publish turn across the scenes in flight), and the skip test for finished outputs.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { FlowGate } from '../coordinator/flow.ts';
import { OutputPool } from '../coordinator/output-pool.ts';
import { paramHash, runKey } from '../coordinator/run-key.ts';
import { discoverScenes } from '../coordinator/scene-discovery.ts';
import type { SceneReport } from '../coordinator/scene-run.ts';
import { itemPathFor } from '../coordinator/stac.ts';
import { readGeoTiffMetadata } from '../raster/geotiff-writer.ts';
import type { ArchiveScene } from '../shared/archive.ts';
import type { WorkflowParams } from '../shared/params.ts';
import { checkArchiveName, type SceneJob } from '../shared/scene-jobs.ts';
import type { SceneQueue } from '../shared/transport.ts';
import { httpHeadersFromFlags, maxInFlightFromFlags, positiveInt, sceneListFromFlags, type Flags } from './options.ts';
import type { CliEnv } from './env.ts';
import { modelDigests, preflightModels, runOne, type CoordinatorContext, type ModelDigests, type PairManifests } from './run-command.ts';

/** The archive's scenes from the flags: a manifest, a static STAC catalog or a STAC API search. */
export async function scenesFromFlags(flags: Flags, command: string, env: CliEnv): Promise<{ scenes: ArchiveScene[]; skipped: { id: string; reason: string }[]; source: string }> {
  const spec = sceneListFromFlags(flags, command);
  const source = 'manifest' in spec ? spec.manifest : 'stac' in spec ? spec.stac : spec.stacApi;
  // A malformed header fails before any work.
  const headers = httpHeadersFromFlags(flags, env.httpHeaderLines ?? []);
  const defaultProductMask = typeof flags['product-mask'] === 'string' ? flags['product-mask'] : 'product';
  const { scenes, skipped } = await discoverScenes(spec, { defaultProductMask, log: env.log, headers });
  return { scenes, skipped, source };
}

/** --archive, or for `batch` a name derived from the output folder (the same folder, the same archive). */
export function archiveNameFromFlags(flags: Flags, outDir: string): string {
  if (typeof flags.archive === 'string') return checkArchiveName(flags.archive);
  const abs = path.resolve(outDir);
  const stem = path.basename(abs).replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40) || 'archive';
  return `${stem}-${createHash('sha256').update(abs).digest('hex').slice(0, 8)}`;
}

export function sceneJobs(archive: string, scenes: ArchiveScene[], outDir: string, params: WorkflowParams, force: boolean): SceneJob[] {
  return scenes.map((s) => ({
    type: 'scene-job',
    v: 1,
    archive,
    key: runKey(s.input, s.productMask, params),
    input: s.input,
    productMask: s.productMask,
    name: s.name,
    out: path.resolve(outDir, `${s.name}.tif`),
    params,
    force,
  }));
}

/** The scene queue: JetStream's over the coordinator's connection with --nats, else in process. */
export async function openSceneQueue(ctx: Pick<CoordinatorContext, 'nc'>, flags: Flags): Promise<SceneQueue> {
  if (!ctx.nc) {
    const { EmbeddedSceneQueue } = await import('../transport/embedded-scenes.ts');
    return new EmbeddedSceneQueue();
  }
  const { ensureSceneTopology, JetStreamSceneQueue } = await import('../transport/jetstream-scenes.ts');
  const options = {
    prefix: typeof flags['nats-prefix'] === 'string' ? flags['nats-prefix'] : undefined,
    ackWaitMs: positiveInt(flags, 'scene-ack-wait-ms', 60_000),
    maxDeliveries: positiveInt(flags, 'scene-max-deliveries', 3),
  };
  await ensureSceneTopology(ctx.nc, options);
  return new JetStreamSceneQueue(ctx.nc, options);
}

/** The mask exists with the same parameter hash, and so does its STAC item (written after it). */
export async function outputIsCurrent(job: SceneJob): Promise<boolean> {
  if (!existsSync(job.out) || !existsSync(itemPathFor(job.out))) return false;
  try {
    return (await readGeoTiffMetadata(job.out)).ICM_PARAM_HASH === paramHash(job.input, job.productMask, job.params);
  } catch {
    return false;
  }
}

export interface SceneRunner {
  run(job: SceneJob): Promise<SceneReport>;
  /** Waits for outputs being written, then ends the output thread. */
  close(): Promise<void>;
}

/**
 * Runs scene jobs as `run` would; the models of each parameter set are checked once. Outputs are
 * merged and written on an output thread (coordinator/output-pool.ts), so the next scene's
 * results are stitched meanwhile.
 */
export function sceneRunner(ctx: CoordinatorContext, flags: Flags, env: CliEnv, modelsDir: string): SceneRunner {
  const perScene = maxInFlightFromFlags(flags, 32);
  // All scenes in flight together keep at most this many chips in flight.
  const globalGate = new FlowGate(perScene * 2);
  // One scene publishes at a time; the next opens and plans meanwhile (see SceneRunOptions.publishTurn).
  const publishTurn = new FlowGate(1);
  // Checked and hashed once per model pair (the STAC items record the sha256).
  const checked = new Map<string, Promise<{ manifests: PairManifests; models: ModelDigests }>>();
  const check = async (params: WorkflowParams): Promise<{ manifests: PairManifests; models: ModelDigests }> => ({ manifests: await preflightModels(params, modelsDir), models: await modelDigests(params, modelsDir) });
  const outputs = new OutputPool({ http: { headers: httpHeadersFromFlags(flags, env.httpHeaderLines ?? []) } });
  return {
    run: async (job) => {
      const pair = JSON.stringify([job.params.cloud_model, job.params.shadow_model]);
      if (!checked.has(pair)) checked.set(pair, check(job.params));
      const { manifests, models } = await checked.get(pair)!;
      const task = { input: job.input, productMask: job.productMask, out: job.out };
      return runOne(task, ctx.transport, job.params, flags, env, { manifests, models, globalGate, publishTurn, onEvent: ctx.onEvent, outputs: outputs.write });
    },
    close: () => outputs.close(),
  };
}
