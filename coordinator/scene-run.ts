/**
 * One scene from input to output, in three steps: plan (open the source and the product mask,
 * lay out the chips, choose the inference domain), run the chips (subscribe to the results,
 * replaying those retained from before a restart, and publish the rest with bounded flow:
 * coordinator/dispatch.ts) while the product mask's pixels are read, then merge with the
 * product mask and write the outputs atomically.
 */
import type { HttpOptions } from '../raster/http.ts';
import { loadProductMask, offsetStatus, openProductMaskAhead, type ProductMask, type ProductMaskSource } from '../raster/product-mask.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import type { SceneReader } from '../raster/types.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { pairDomain, type ModelManifest } from '../shared/manifest.ts';
import { WORKFLOW_IO, type WorkflowParams } from '../shared/params.ts';
import { chipAt, sceneLayout, type SceneLayout } from '../shared/tiling.ts';
import type { CoordinatorTransport } from '../shared/transport.ts';
import { chipWindow, dispatchJobs, stillQueued, type DispatchPlan } from './dispatch.ts';
import { FlowGate } from './flow.ts';
import { paramHash, runKey as makeRunKey } from './run-key.ts';
import { OutcomeCollector } from './collector.ts';
import { Stitcher } from './stitch.ts';
import { sceneOf, writeOutputs, type OutputMeta, type OutputPaths, type OutputWriter } from './outputs.ts';

export interface SceneTask extends OutputPaths {
  /** Path or URL of the scene (stacked GeoTIFF, band folder, STAC item). */
  input: string;
  /** Product mask: 'product' (the product's own), 'scl', 'none', or a GeoTIFF path or URL. */
  productMask: string;
}

export type CoordinatorEvent =
  | { type: 'scene-start'; runKey: string; input: string; chips: number; resumed: number }
  | { type: 'chip-published'; runKey: string; chipIndex: number }
  | { type: 'chip-done'; runKey: string; chipIndex: number; duplicate: boolean; pixels: number; replayed: boolean }
  | { type: 'stage'; runKey: string; stage: 'plan' | 'stitch' | 'merge' | 'write'; seconds: number }
  | { type: 'scene-done'; runKey: string; report: SceneReport }
  | { type: 'scene-failed'; runKey: string; input: string; error: CloudMaskError }
  | { type: 'warning'; runKey: string; message: string };

export interface SceneRunOptions {
  params: WorkflowParams;
  /** Chips in flight for this scene. Default 32. */
  maxInFlight?: number;
  /** Shared bound across the scenes of a batch. */
  globalGate?: FlowGate;
  /**
   * Shared by the scenes of a batch (a gate of 1): a scene publishes its jobs only while it holds
   * the turn, so the next scene opens and plans while this one runs, and publishes once this one
   * has published its last job. Scenes publishing side by side would compete for the workers'
   * tile caches (measured: a 3-scene batch 25 % slower than the scenes one after the other).
   */
  publishTurn?: FlowGate;
  /** Ship pixels inside the jobs (workers that cannot reach the source). */
  inlinePixels?: boolean;
  /** Headers for http(s) sources (STAC item, band files, mask files); never put into jobs. */
  http?: HttpOptions;
  /** Consecutive chips of a row per job (read once, batched). Default 4; 1 with inline pixels. */
  chipsPerJob?: number;
  /**
   * The manifests of params.cloud_model and params.shadow_model, as the workers will load them:
   * with them, chips whose models allow it run over their write window plus the models' margin
   * only (see planDomain). Without them every chip runs whole, as FarmVibes.
   */
  manifests?: { cloud: ModelManifest; shadow: ModelManifest };
  /** The models' checksums, recorded in the output's STAC item (the caller reads the model files). */
  models?: OutputMeta['models'];
  /** Who merges and writes the outputs: here by default, or an output thread (coordinator/output-pool.ts). */
  outputs?: OutputWriter;
  onEvent?: (event: CoordinatorEvent) => void;
}

export interface SceneReport {
  input: string;
  output: string;
  runKey: string;
  paramHash: string;
  width: number;
  height: number;
  chips: number;
  /** Chips whose results came from before a restart and were not recomputed. */
  resumedChips: number;
  skippedChips: number;
  /** Where the models ran: 'write windows + N px' or 'whole chips (why)'. */
  inferenceDomain: string;
  seconds: number;
  /** Fraction of the scene flagged in the final mask. */
  cloudFraction: number;
  /** Where the product mask came from: MSK_CLASSI_B00, MSK_CLOUDS_B00.gml, SCL, a file, or none. */
  productMask: { source: ProductMaskSource; href: string | null };
}

const elapsed = (t0: number): number => (performance.now() - t0) / 1000;

type Emit = (event: CoordinatorEvent) => void;

// Where a job's chips run is the dispatcher's business; the tests know it from here too.
export { chipWindow };

/**
 * The margin chips run with (null: whole chips), and the report's words for it. A margin that
 * leaves no chip smaller than whole (wider than every overlap) is whole chips.
 */
export function planDomain(params: WorkflowParams, manifests: SceneRunOptions['manifests'], layout: SceneLayout): { margin: number | null; describe: string } {
  if (params.per_chip) return { margin: null, describe: 'whole chips (per_chip)' };
  if (!manifests) return { margin: null, describe: 'whole chips (no model manifests given)' };
  const d = pairDomain(manifests.cloud, manifests.shadow);
  if (d.kind === 'per-chip') return { margin: null, describe: `whole chips (${d.reason})` };
  let smaller = 0;
  for (let i = 0; i < layout.count; i++) if (chipWindow(chipAt(layout, i), d.margin).infer) smaller++;
  if (smaller === 0) return { margin: null, describe: `whole chips (the models' ${d.margin} px margin is as wide as the chips' overlap)` };
  return { margin: d.margin, describe: `write windows + ${d.margin} px (${smaller} of ${layout.count} chips)` };
}

interface ScenePlan extends DispatchPlan {
  input: string;
  paramHash: string;
  /** Being read while the chips run (its file is open and its grid checked already). */
  productMask: Promise<ProductMask>;
  inferenceDomain: string;
}

/**
 * Resolves and opens the source, opens and checks the product mask (a mask on another grid fails
 * before any chip runs) and leaves its pixels reading beside the chips, lays out the chips and
 * chooses where the models run.
 */
async function planScene(task: SceneTask, transport: CoordinatorTransport, options: SceneRunOptions, keys: { runKey: string; paramHash: string }, emit: Emit): Promise<ScenePlan> {
  const { params, http } = options;
  const warn = (message: string): void => emit({ type: 'warning', runKey: keys.runKey, message });
  const source = await resolveSource(task.input, { http });
  transport.prepare?.(source);
  openProductMaskAhead(task.productMask, source, http);
  const scene = await openScene(source, { http });
  try {
    const { width, height } = scene.geo;
    let onChecked!: () => void;
    const checked = new Promise<void>((resolve) => (onChecked = resolve));
    const mask = loadProductMask(task.productMask, scene, { http, warn, checked: onChecked });
    // Awaited after the chips; a failure before then is not unhandled.
    mask.catch(() => {});
    await Promise.race([checked, mask]);
    const offset = offsetStatus(scene.metadata);
    if (offset.offsetInData && !params.harmonize) {
      warn(`processing baseline ${offset.baseline}: DN carry the +1000 offset; FarmVibes feeds them to the models as they are (pass --harmonize to subtract it)`);
    }
    const wholeScene = params.in_memory ? await scene.readWindow({ x: 0, y: 0, width, height }) : null;
    const layout = sceneLayout(width, height);
    const domain = planDomain(params, options.manifests, layout);
    return {
      ...keys,
      input: task.input,
      source,
      scene,
      productMask: mask,
      layout,
      wholeScene,
      params,
      withProbabilities: Boolean(task.probabilities),
      margin: domain.margin,
      inferenceDomain: domain.describe,
    };
  } catch (err) {
    await scene.close().catch(() => {});
    throw err;
  }
}

/**
 * Gets every chip's result into the stitcher: subscribes (replayed results first), publishes
 * what neither a replay nor an earlier coordinator's still-queued jobs cover, and waits for the
 * rest. Returns how many chips came from before a restart.
 */
async function runChips(plan: ScenePlan, stitcher: Stitcher, transport: CoordinatorTransport, options: SceneRunOptions, emit: Emit): Promise<number> {
  const { runKey, layout } = plan;
  const gate = new FlowGate(options.maxInFlight ?? 32);
  const gates = options.globalGate ? [gate, options.globalGate] : [gate];
  const collector = new OutcomeCollector(plan.input, layout, stitcher, gates, {
    onChip: (chipIndex, pixels, duplicate, replayed) => emit({ type: 'chip-done', runKey, chipIndex, duplicate, pixels, replayed }),
  });
  // Outcomes delivered while subscribing are replays from before a restart.
  const sub = await transport.subscribe(runKey, collector.onOutcome);
  collector.replaying = false;
  try {
    const state = await transport.getState(runKey);
    const publishedBefore = state && state.chips === layout.count ? state.publishedUpTo : 0;
    const resumedChips = stitcher.done;
    const isDone = (i: number): boolean => stitcher.has(i);
    // Chips published by an earlier coordinator and not yet done are still queued: count them in flight.
    for (const g of gates) g.take(stillQueued(layout, publishedBefore, isDone));
    emit({ type: 'scene-start', runKey, input: plan.input, chips: layout.count, resumed: resumedChips });
    if (options.publishTurn) await options.publishTurn.acquire(1);
    try {
      await dispatchJobs(plan, transport, {
        gates,
        inlinePixels: Boolean(options.inlinePixels),
        chipsPerJob: options.chipsPerJob ?? 4,
        from: publishedBefore,
        isDone,
        stopped: () => collector.failed,
        onPublished: (chipIndex) => emit({ type: 'chip-published', runKey, chipIndex }),
      });
    } finally {
      options.publishTurn?.release(1);
    }
    await collector.wait();
    emit({ type: 'stage', runKey, stage: 'stitch', seconds: collector.stitchSeconds });
    return resumedChips;
  } finally {
    options.globalGate?.release(gate.inUse);
    await sub.close();
  }
}

export async function runScene(task: SceneTask, transport: CoordinatorTransport, options: SceneRunOptions): Promise<SceneReport> {
  const started = performance.now();
  const { params } = options;
  const runKey = makeRunKey(task.input, task.productMask, params);
  const hash = paramHash(task.input, task.productMask, params);
  const emit = options.onEvent ?? (() => {});
  let reader: SceneReader | null = null;
  try {
    const plan = await planScene(task, transport, options, { runKey, paramHash: hash }, emit);
    reader = plan.scene;
    const { width, height } = plan.scene.geo;
    const stitcher = new Stitcher(width, height, plan.layout.count, plan.withProbabilities);
    emit({ type: 'stage', runKey, stage: 'plan', seconds: elapsed(started) });

    // The product mask goes in as soon as it is read, while the chips run: after them, it held
    // the merge for about 0.1 s of this thread with the chip threads idle.
    // Then the merge's dilation follows the chip rows as they complete.
    const productAdded = plan.productMask.then((mask) => {
      if (mask.bits) stitcher.addProductMask(mask.bits);
      stitcher.dilateAsChipsCome(WORKFLOW_IO.fixed.closing_size);
      return mask;
    });
    productAdded.catch(() => {});
    const resumedChips = await runChips(plan, stitcher, transport, options, emit);

    const mask = await productAdded;
    const write = options.outputs ?? writeOutputs;
    const written = await write(task, stitcher, sceneOf(plan.scene), params, {
      runKey,
      paramHash: hash,
      input: task.input,
      models: options.models,
      onStage: (stage, seconds) => emit({ type: 'stage', runKey, stage, seconds }),
      onNote: (message) => emit({ type: 'warning', runKey, message }),
    });
    await transport.finish(runKey);
    const report: SceneReport = {
      input: task.input,
      output: task.out,
      runKey,
      paramHash: hash,
      width,
      height,
      chips: plan.layout.count,
      resumedChips,
      skippedChips: stitcher.skipped,
      inferenceDomain: plan.inferenceDomain,
      seconds: elapsed(started),
      cloudFraction: written.cloudFraction,
      productMask: { source: mask.source, href: mask.href },
    };
    emit({ type: 'scene-done', runKey, report });
    return report;
  } catch (err) {
    const error = err instanceof CloudMaskError ? err : new CloudMaskError('INTERNAL', `${task.input}: ${(err as Error).message}`, { cause: err });
    emit({ type: 'scene-failed', runKey, input: task.input, error });
    if (error.code === 'DEAD_LETTER') await transport.finish(runKey).catch(() => {});
    throw error;
  } finally {
    await reader?.close().catch(() => {});
  }
}
