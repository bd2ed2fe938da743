/**
 * One job (a few neighbouring chips), inside a Piscina thread: read the bounding window of their
 * inference domains once (each chip's write window plus the models' margin where the job and this
 * thread's manifests allow it, else the whole chip), run both models chip by chip over its
 * domain, threshold, bit-pack each chip's write window.
 * Model sessions and scene readers are opened once per thread and reused.
 *
 * A thread holds two jobs or more (the pool's concurrentTasksPerWorker): while one is in
 * inference the others read. onnxruntime's run blocks this thread's event loop for a chip at a time, but the
 * next job's requests are already out (their latency passes meanwhile) and its reads and decodes
 * proceed between chips. Inference itself takes turns (one job at a time, in the order their
 * reads finish), so the model buffers are never shared.
 */
import { workerData } from 'node:worker_threads';
import { httpStats, setHttpReadOptions, useIoThread, type HttpReadOptions, type HttpStats } from '../raster/http-range.ts';
import { openScene } from '../raster/scene-reader.ts';
import { TileCache, type TileCacheHandle } from '../raster/tile-cache.ts';
import type { SceneReader, SceneSource, Window } from '../raster/types.ts';
import { decodeCount } from '../raster/tiff-window.ts';
import { packedLength } from '../shared/bitpack.ts';
import { CloudMaskError, toErrorData, type ErrorData } from '../shared/errors.ts';
import { pairDomain, type PairDomain } from '../shared/manifest.ts';
import { boundingWindow, unionWindow, type ChipWindow, type TileJob, type TileResult } from '../shared/messages.ts';
import { isExactDomain } from '../shared/tiling.ts';
import { ChipInputs } from './chip-input.ts';
import { loadModelPair, predictPair, readManifest, type ModelPair, type PairPrediction } from './models.ts';

export interface ChipTask {
  job: TileJob;
  worker: string;
  modelsDir: string;
  intraOpThreads: number;
}

/** This thread's reading since its previous reply (the pool sums them into metrics). */
export interface IoDelta {
  http: HttpStats;
  /** Compressed tiles decoded (each miss of the tile cache, or every tile without one). */
  decodes: number;
}

export type ChipReply = ({ ok: true; results: TileResult[] } | { ok: false; error: ErrorData }) & { io: IoDelta };

/** What the pool gives every thread at start (Piscina's workerData). */
export interface ChipThreadData {
  /** The process's decoded-tile cache, shared by all chip threads; null = none. */
  tileCache: TileCacheHandle | null;
  /** Headers for every request to http(s) sources (given to the process, never carried by jobs). */
  httpHeaders?: Record<string, string>;
  /** How this thread's GeoTIFF reads over http retry and merge. */
  httpRead?: HttpReadOptions;
}

const threadData = workerData as ChipThreadData | null | undefined;
const tileCache = threadData?.tileCache ? new TileCache(threadData.tileCache) : undefined;
const http = { headers: threadData?.httpHeaders ?? {} };
if (threadData?.httpRead) setHttpReadOptions(threadData.httpRead);
// Inference blocks this thread's event loop: its http reads go on in a thread of their own.
useIoThread();

/** This thread's model pairs (one onnxruntime session each when the models merge; see models.ts). */
const pairs = new Map<string, Promise<ModelPair>>();

/** The job's model pair, loaded on first use; `loadMs` is the time this call waited for it. */
async function modelPair(task: ChipTask): Promise<{ pair: ModelPair; loadMs: number }> {
  const { cloud, shadow } = task.job.models;
  const key = JSON.stringify([task.modelsDir, cloud, shadow, task.intraOpThreads]);
  let p = pairs.get(key);
  if (!p) {
    const t0 = performance.now();
    p = loadModelPair(cloud, shadow, task.modelsDir, { intraOpNumThreads: task.intraOpThreads });
    p.catch(() => pairs.delete(key));
    pairs.set(key, p);
    return { pair: await p, loadMs: performance.now() - t0 };
  }
  return { pair: await p, loadMs: 0 };
}

const readers = new Map<string, Promise<SceneReader>>();
const MAX_OPEN_SCENES = 4;

function reader(source: SceneSource): Promise<SceneReader> {
  const key = JSON.stringify(source);
  const cached = readers.get(key);
  if (cached) return cached;
  if (readers.size >= MAX_OPEN_SCENES) {
    const [oldKey, old] = readers.entries().next().value!;
    readers.delete(oldKey);
    old.then((o) => o.close()).catch(() => {});
  }
  const r = openScene(source, { tileCache, http });
  r.catch(() => readers.delete(key));
  readers.set(key, r);
  return r;
}

/** Piscina task `open` (ChipPool.prepare): this thread opens a scene ahead of its jobs; a failure is left for them to report. */
export async function open(source: SceneSource): Promise<void> {
  await reader(source).catch(() => {});
}

/**
 * Per-thread buffers reused from job to job: a job allocates nothing proportional to its size,
 * so no fresh pages to fault in and no garbage piling up between collections.
 */
const freeUnions: Uint16Array[] = [];
const floatScratch = new Map<string, Float32Array>();
/** The chips' model inputs: what it returns is this thread's until the next chip (inference takes turns). */
const chipInputs = new ChipInputs();

/** This thread's float buffer `key` of `n` values. */
function floats(key: string, n: number): Float32Array {
  let b = floatScratch.get(key);
  if (!b || b.length < n) floatScratch.set(key, (b = new Float32Array(n)));
  return b.subarray(0, n);
}

/** A union-window buffer of at least `n` values, one per job this thread holds; give it back when done. */
function takeUnion(n: number): Uint16Array {
  const i = freeUnions.findIndex((b) => b.length >= n);
  // Union windows vary a little in width: grow with headroom.
  return i >= 0 ? freeUnions.splice(i, 1)[0]! : new Uint16Array(Math.ceil(n * 1.25));
}

/** Reads the union of the job's chip windows once (into `buffer`); inline when the coordinator shipped it. */
async function readPixels(job: TileJob, union: Window, buffer: Uint16Array): Promise<Uint16Array> {
  if (job.pixels) return job.pixels;
  const n = 12 * union.width * union.height;
  return (await reader(job.source)).readWindow(union, undefined, buffer.subarray(0, n));
}

/** The end of the inference queue: each job's chips run after those of the job before. */
let inferenceTurn: Promise<void> = Promise.resolve();

async function inTurn<T>(fn: () => Promise<T>): Promise<T> {
  const before = inferenceTurn;
  let done!: () => void;
  inferenceTurn = new Promise<void>((r) => (done = r));
  try {
    await before;
    return await fn();
  } finally {
    done();
  }
}

/**
 * Bit-packs window `write` of a raster covering window `read` (as packBits of the crop would): a
 * pixel is set when its value is above `threshold`.
 */
function packWindow(src: Float32Array | Uint8Array, read: Window, write: Window, threshold: number): Uint8Array {
  const out = new Uint8Array(packedLength(write.width * write.height));
  const dx = write.x - read.x;
  const dy = write.y - read.y;
  let bit = 0;
  let acc = 0;
  for (let r = 0; r < write.height; r++) {
    const start = (dy + r) * read.width + dx;
    const end = start + write.width;
    for (let i = start; i < end; i++) {
      if (src[i]! > threshold) acc |= 1 << (bit & 7);
      if ((++bit & 7) === 0) {
        out[(bit >>> 3) - 1] = acc;
        acc = 0;
      }
    }
  }
  if (bit & 7) out[bit >>> 3] = acc;
  return out;
}

/** Crops window `write` out of a raster covering window `read`. */
function crop(src: Float32Array, read: Window, write: Window): Float32Array {
  const out = new Float32Array(write.width * write.height);
  const dx = write.x - read.x;
  const dy = write.y - read.y;
  for (let r = 0; r < write.height; r++) {
    const start = (dy + r) * read.width + dx;
    out.set(src.subarray(start, start + write.width), r * write.width);
  }
  return out;
}

/** Both models on one prepared chip; all-nodata chips skip inference, nodata pixels get probability 1. */
async function inferChip(pair: ModelPair, dn: Float32Array, nodata: Uint8Array, valid: number, h: number, w: number): Promise<PairPrediction> {
  const n = h * w;
  const cloud = floats('cloud', n);
  const shadow = floats('shadow', n);
  if (valid === 0) {
    cloud.fill(1);
    shadow.fill(1);
    return { cloud, shadow, inferenceMs: 0, cloudMs: 0, shadowMs: 0 };
  }
  const scratch = (scale: number, key: string): Float32Array | undefined => (scale === 1 ? undefined : floats(key, dn.length));
  const r = await predictPair(pair, dn, h, w, {
    cloud,
    shadow,
    cloudInput: scratch(pair.cloud.manifest.inputScale, 'cloudInput'),
    shadowInput: scratch(pair.shadow.manifest.inputScale, 'shadowInput'),
  });
  if (valid < n) {
    for (let i = 0; i < n; i++) {
      if (nodata[i]) {
        r.cloud[i] = 1;
        r.shadow[i] = 1;
      }
    }
  }
  return r;
}

/** A chip's result message from the rasters over its domain: thresholded, bit-packed write windows (and probabilities when asked). */
function chipResult(task: ChipTask, chip: ChipWindow, domain: Window, probs: PairPrediction, nodata: Uint8Array, valid: number, readMs: number, loadMs: number): TileResult {
  const { job } = task;
  const { write } = chip;
  const t0 = performance.now();
  const result: TileResult = {
    type: 'tile-result',
    v: 1,
    runKey: job.runKey,
    chipIndex: chip.chipIndex,
    worker: task.worker,
    write: chip.write,
    cloud: packWindow(probs.cloud, domain, write, job.thresholds.cloud),
    shadow: packWindow(probs.shadow, domain, write, job.thresholds.shadow),
    nodata: packWindow(nodata, domain, write, 0),
    skipped: valid === 0,
    inferredPixels: valid === 0 ? 0 : domain.width * domain.height,
    timings: { readMs, inferenceMs: probs.inferenceMs, cloudMs: probs.cloudMs, shadowMs: probs.shadowMs, thresholdMs: 0, modelLoadMs: loadMs },
  };
  if (job.withProbabilities) {
    result.cloudProb = crop(probs.cloud, domain, write);
    result.shadowProb = crop(probs.shadow, domain, write);
  }
  result.timings.thresholdMs = performance.now() - t0;
  return result;
}

/** How this thread may run the job's model pair (from their manifests, read once per pair). */
const domainRules = new Map<string, Promise<PairDomain>>();
function pairDomainOf(task: ChipTask): Promise<PairDomain> {
  const { cloud, shadow } = task.job.models;
  const key = JSON.stringify([task.modelsDir, cloud, shadow]);
  let p = domainRules.get(key);
  if (!p) {
    p = Promise.all([readManifest(cloud, task.modelsDir), readManifest(shadow, task.modelsDir)]).then(([c, s]) => pairDomain(c, s));
    p.catch(() => domainRules.delete(key));
    domainRules.set(key, p);
  }
  return p;
}

/**
 * Where this thread runs the models for `chip`: the job's inference window when this thread's
 * manifests say it is exact (they might differ from the coordinator's), else the whole chip.
 */
function chipDomain(chip: ChipWindow, rule: PairDomain): Window {
  if (!chip.infer) return chip.read;
  return rule.kind === 'window' && isExactDomain(chip.read, chip.write, chip.infer, rule.margin) ? chip.infer : chip.read;
}

/** Each chip's domain, and the window the job reads: the domains' bounding box (inline jobs: the chips' read windows, which they carry). */
export function jobWindows(job: TileJob, rule: PairDomain): { union: Window; domains: Window[] } {
  const domains = job.chips.map((c) => chipDomain(c, rule));
  return { union: job.pixels ? unionWindow(job.chips) : boundingWindow(domains), domains };
}

/**
 * One job: read the bounding window of the chips' domains once, then chip by chip: model input
 * over the chip's domain, both models (one chip per onnxruntime run: larger batches cost
 * intermediate memory and gain no speed), threshold, pack. Nothing outside the domains is read:
 * with the bundled models a job's read window is its write windows plus a pixel, not its whole
 * 512-pixel chips (a third fewer pixels read, resampled and copied on a full tile); a pixel reads
 * the same in any window (raster/resample.ts), so the masks are the same. Inline jobs carry the
 * union of the chips' read windows.
 */
export async function processJob(task: ChipTask): Promise<TileResult[]> {
  const { job } = task;
  const chips = job.chips;
  const { width: w, height: h } = chips[0].read;
  if (chips.some((c) => c.read.width !== w || c.read.height !== h)) throw new CloudMaskError('BAD_MESSAGE', `tile job ${job.runKey}: chips of one job must have one read size`);
  const { union, domains } = jobWindows(job, await pairDomainOf(task));
  const buffer = job.pixels ? null : takeUnion(12 * union.width * union.height);
  try {
    const t0 = performance.now();
    const pixels = await readPixels(job, union, buffer ?? new Uint16Array(0));
    // The union read is shared: split evenly over the job's chips. Wall time: it may overlap the other job's inference.
    const readMs = (performance.now() - t0) / chips.length;
    return await inTurn(() => inferJob(task, pixels, union, domains, readMs));
  } finally {
    if (buffer) freeUnions.push(buffer);
  }
}

/** The job's chips through both models, one chip per onnxruntime run; `pixels` hold window `union`, which holds every chip's domain. */
async function inferJob(task: ChipTask, pixels: Uint16Array, union: Window, domains: Window[], readMs: number): Promise<TileResult[]> {
  const { job } = task;
  let { pair, loadMs } = await modelPair(task);
  const results: TileResult[] = [];
  for (const [k, chip] of job.chips.entries()) {
    const tp = performance.now();
    const domain = domains[k]!;
    const { dn, nodata, valid } = chipInputs.prepare(pixels, union, domain, job.harmonize);
    const prepMs = performance.now() - tp;
    const probs = await inferChip(pair, dn, nodata, valid, domain.height, domain.width);
    results.push(chipResult(task, chip, domain, probs, nodata, valid, readMs + prepMs, loadMs));
    loadMs = 0;
  }
  return results;
}

let reported: { http: HttpStats; decodes: number } = { http: httpStats(), decodes: decodeCount() };

/** What this thread read since the previous reply (both jobs of the thread together). */
function ioDelta(): IoDelta {
  const now = { http: httpStats(), decodes: decodeCount() };
  const r = now.http.requests;
  const p = reported.http.requests;
  const delta: IoDelta = {
    http: { requests: { ok: r.ok - p.ok, retry: r.retry - p.retry, error: r.error - p.error }, bytes: now.http.bytes - reported.http.bytes },
    decodes: now.decodes - reported.decodes,
  };
  reported = now;
  return delta;
}

/** Piscina entry: errors come back as data so their code survives the thread boundary. */
export default async function run(task: ChipTask): Promise<ChipReply> {
  try {
    const results = await processJob(task);
    return { ok: true, results, io: ioDelta() };
  } catch (err) {
    return { ok: false, error: toErrorData(err), io: ioDelta() };
  }
}
