/**
 * One scene from input to output: plan the chips, publish them with bounded flow, stitch the
 * results as they come (replayed ones first when resuming), merge with the product mask, write
 * the outputs atomically.
 */
import type { HttpOptions } from '../raster/http.ts';
import { loadProductMask, offsetStatus, type ProductMaskSource } from '../raster/product-mask.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import type { SceneReader, SceneSource, Window } from '../raster/types.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { pairDomain, type ModelManifest } from '../shared/manifest.ts';
import { MAX_CHIPS_PER_JOB, unionWindow, type ChipWindow, type TileJob } from '../shared/messages.ts';
import type { WorkflowParams } from '../shared/params.ts';
import { chipAt, inferenceWindow, sameWindow, sceneLayout, type ChipPlan, type SceneLayout } from '../shared/tiling.ts';
import type { CoordinatorTransport } from '../shared/transport.ts';
import { FlowGate } from './flow.ts';
import { paramHash, runKey as makeRunKey } from './run-key.ts';
import { OutcomeCollector } from './collector.ts';
import { Stitcher } from './stitch.ts';
import { writeOutputs, type OutputMeta, type OutputPaths } from './outputs.ts';

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

/** A scene's last chips are published one per job (see nextGroup). */
const TAIL_CHIPS = 16;

function cutWindow(scene: Uint16Array, width: number, height: number, win: Window): Uint16Array {
  const out = new Uint16Array(12 * win.width * win.height);
  for (let b = 0; b < 12; b++) {
    for (let r = 0; r < win.height; r++) {
      const y = win.y + r;
      if (y < 0 || y >= height) continue;
      const x0 = Math.max(win.x, 0);
      const x1 = Math.min(win.x + win.width, width);
      if (x1 <= x0) continue;
      const src = b * width * height + y * width;
      out.set(scene.subarray(src + x0, src + x1), b * win.width * win.height + r * win.width + (x0 - win.x));
    }
  }
  return out;
}

/**
 * The chip published at position `p`: chip rows top to bottom, alternately left to right and
 * right to left. Workers' tile caches then sweep back and forth: the tiles a row ends with are the
 * ones the next row starts with, and the least recently used ones are needed last (a cache swept
 * always from the left evicts exactly the tiles the next row needs first).
 */
export function chipAtPosition(layout: SceneLayout, p: number): number {
  const cols = layout.cols.length;
  const row = Math.floor(p / cols);
  const k = p % cols;
  return row * cols + (row % 2 === 0 ? k : cols - 1 - k);
}

/**
 * The next job's chips: up to `perJob` chips at consecutive positions (see chipAtPosition) of
 * one chip row from position `start`, skipping chips already stitched (a stitched chip also ends
 * a group, so jobs stay contiguous). The scene's last `tail` positions go one chip per job, so
 * the workers' threads finish close together instead of one idling while another runs a whole
 * job. `next` is the position after the group.
 */
export function nextGroup(layout: SceneLayout, isDone: (i: number) => boolean, start: number, perJob: number, tail = 0): { chips: ChipPlan[]; next: number } {
  const chips: ChipPlan[] = [];
  let p = start;
  while (p < layout.count && chips.length < (p >= layout.count - tail ? 1 : perJob)) {
    const index = chipAtPosition(layout, p);
    if (isDone(index)) {
      if (chips.length > 0) break;
      p++;
      continue;
    }
    const chip = chipAt(layout, index);
    if (chips.length > 0 && chip.row !== chips[0].row) break;
    chips.push(chip);
    p++;
  }
  return { chips, next: p };
}

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

/** A chip as a job carries it: with its inference window where that is smaller than the chip. */
export function chipWindow(c: ChipPlan, margin: number | null): ChipWindow {
  const out: ChipWindow = { chipIndex: c.index, read: c.read, write: c.write };
  if (margin === null) return out;
  const infer = inferenceWindow(c.read, c.write, margin);
  if (!sameWindow(infer, c.read)) out.infer = infer;
  return out;
}

interface OpenedScene {
  source: SceneSource;
  scene: SceneReader;
  productMask: Uint8Array | null;
  productMaskFrom: SceneReport['productMask'];
  layout: SceneLayout;
  /** The whole scene's pixels in in-memory mode. */
  wholeScene: Uint16Array | null;
}

/** Resolves and opens the source, reads the product mask first (a mask on another grid fails before any chip runs). */
async function openForRun(task: SceneTask, params: WorkflowParams, http: HttpOptions | undefined, warn: (message: string) => void): Promise<OpenedScene> {
  const source = await resolveSource(task.input, { http });
  const scene = await openScene(source, { http });
  try {
    const { width, height } = scene.geo;
    const mask = await loadProductMask(task.productMask, scene, { http, warn });
    const offset = offsetStatus(scene.metadata);
    if (offset.offsetInData && !params.harmonize) {
      warn(`processing baseline ${offset.baseline}: DN carry the +1000 offset; FarmVibes feeds them to the models as they are (pass --harmonize to subtract it)`);
    }
    const wholeScene = params.in_memory ? await scene.readWindow({ x: 0, y: 0, width, height }) : null;
    const productMaskFrom = { source: mask.source, href: mask.href };
    return { source, scene, productMask: mask.pixels, productMaskFrom, layout: sceneLayout(width, height), wholeScene };
  } catch (err) {
    await scene.close().catch(() => {});
    throw err;
  }
}

export async function runScene(task: SceneTask, transport: CoordinatorTransport, options: SceneRunOptions): Promise<SceneReport> {
  const started = performance.now();
  const { params } = options;
  const key = makeRunKey(task.input, task.productMask, params);
  const hash = paramHash(task.input, task.productMask, params);
  const emit = options.onEvent ?? (() => {});
  let reader: SceneReader | null = null;
  try {
    const opened = await openForRun(task, params, options.http, (message) => emit({ type: 'warning', runKey: key, message }));
    const { scene, layout, wholeScene } = opened;
    reader = scene;
    const { width, height } = scene.geo;
    const stitcher = new Stitcher(width, height, layout.count, Boolean(task.probabilities));
    emit({ type: 'stage', runKey: key, stage: 'plan', seconds: elapsed(started) });

    const domain = planDomain(params, options.manifests, layout);
    const gate = new FlowGate(options.maxInFlight ?? 32);
    const gates = options.globalGate ? [gate, options.globalGate] : [gate];
    const collector = new OutcomeCollector(task.input, layout, stitcher, gates, {
      onChip: (chipIndex, pixels, duplicate, replayed) => emit({ type: 'chip-done', runKey: key, chipIndex, duplicate, pixels, replayed }),
    });
    // Outcomes delivered while subscribing are replays from before a restart.
    const sub = await transport.subscribe(key, collector.onOutcome);
    collector.replaying = false;
    try {
      const state = await transport.getState(key);
      const publishedBefore = state && state.chips === layout.count ? state.publishedUpTo : 0;
      const resumedChips = stitcher.done;
      // Chips published by an earlier coordinator and not yet done are still queued: count them in flight.
      let stillQueued = 0;
      for (let p = 0; p < publishedBefore; p++) if (!stitcher.has(chipAtPosition(layout, p))) stillQueued++;
      for (const g of gates) g.take(stillQueued);
      emit({ type: 'scene-start', runKey: key, input: task.input, chips: layout.count, resumed: resumedChips });

      const base: Omit<TileJob, 'chips'> = {
        type: 'tile-job',
        v: 1,
        runKey: key,
        source: opened.source,
        models: { cloud: params.cloud_model, shadow: params.shadow_model },
        thresholds: { cloud: params.cloud_thr, shadow: params.shadow_thr },
        harmonize: params.harmonize,
        withProbabilities: Boolean(task.probabilities),
      };
      // Jobs of neighbouring chips: the worker reads their union window once and batches them.
      // Inline pixels must fit one message: one chip per job.
      const inline = Boolean(options.inlinePixels || wholeScene);
      const perJob = inline ? 1 : Math.max(1, Math.min(options.chipsPerJob ?? 4, gate.limit, MAX_CHIPS_PER_JOB));
      // Small scenes keep most of their chips grouped.
      const tail = Math.min(TAIL_CHIPS, Math.floor(layout.count / 4));
      let position = publishedBefore;
      if (options.publishTurn) await options.publishTurn.acquire(1);
      try {
        while (position < layout.count && !collector.failed) {
          const group = nextGroup(layout, (k) => stitcher.has(k), position, perJob, tail);
          position = group.next;
          if (group.chips.length === 0) continue;
          for (const g of gates) await g.acquire(group.chips.length);
          if (collector.failed) break;
          const job: TileJob = { ...base, chips: group.chips.map((c) => chipWindow(c, domain.margin)) };
          if (inline) {
            const union = unionWindow(job.chips);
            job.pixels = wholeScene ? cutWindow(wholeScene, width, height, union) : await scene.readWindow(union);
          }
          await transport.submit(job);
          for (const c of group.chips) emit({ type: 'chip-published', runKey: key, chipIndex: c.index });
          // After the publish: a crash in between re-publishes one job, never skips one.
          await transport.putState(key, { publishedUpTo: position, chips: layout.count });
        }
      } finally {
        options.publishTurn?.release(1);
      }
      await collector.wait();
      emit({ type: 'stage', runKey: key, stage: 'stitch', seconds: collector.stitchSeconds });

      if (opened.productMask) stitcher.addProductMask(opened.productMask);
      const written = await writeOutputs(task, stitcher, scene, params, {
        runKey: key,
        paramHash: hash,
        input: task.input,
        models: options.models,
        onStage: (stage, seconds) => emit({ type: 'stage', runKey: key, stage, seconds }),
        onNote: (message) => emit({ type: 'warning', runKey: key, message }),
      });
      await transport.finish(key);
      const report: SceneReport = {
        input: task.input,
        output: task.out,
        runKey: key,
        paramHash: hash,
        width,
        height,
        chips: layout.count,
        resumedChips,
        skippedChips: stitcher.skipped,
        inferenceDomain: domain.describe,
        seconds: elapsed(started),
        cloudFraction: written.cloudFraction,
        productMask: opened.productMaskFrom,
      };
      emit({ type: 'scene-done', runKey: key, report });
      return report;
    } finally {
      options.globalGate?.release(gate.inUse);
      await sub.close();
    }
  } catch (err) {
    const error = err instanceof CloudMaskError ? err : new CloudMaskError('INTERNAL', `${task.input}: ${(err as Error).message}`, { cause: err });
    emit({ type: 'scene-failed', runKey: key, input: task.input, error });
    if (error.code === 'DEAD_LETTER') await transport.finish(key).catch(() => {});
    throw error;
  } finally {
    await reader?.close().catch(() => {});
  }
}
