/**
 * One job (a few neighbouring chips), inside a Piscina thread: read their union window once, run
 * both models over the batch, threshold, bit-pack each chip's write window.
 * Model sessions and scene readers are opened once per thread and reused.
 */
import { openScene } from '../raster/scene-reader.ts';
import type { SceneReader, Window } from '../raster/types.ts';
import { packBits } from '../shared/bitpack.ts';
import { CloudMaskError, toErrorData, type ErrorData } from '../shared/errors.ts';
import { unionWindow, type ChipWindow, type TileJob, type TileResult } from '../shared/messages.ts';
import { loadModel, predictProbabilities, type LoadedModel } from './models.ts';

export interface ChipTask {
  job: TileJob;
  worker: string;
  modelsDir: string;
  intraOpThreads: number;
}

export type ChipReply = { ok: true; results: TileResult[] } | { ok: false; error: ErrorData };

const models = new Map<string, Promise<LoadedModel>>();
const readers = new Map<string, Promise<SceneReader>>();
const MAX_OPEN_SCENES = 4;

function model(name: string, role: 'cloud' | 'shadow', task: ChipTask): Promise<LoadedModel> {
  const key = `${role}|${task.modelsDir}|${name}`;
  let m = models.get(key);
  if (!m) {
    m = loadModel(name, role, task.modelsDir, { intraOpNumThreads: task.intraOpThreads });
    m.catch(() => models.delete(key));
    models.set(key, m);
  }
  return m;
}

function reader(job: TileJob): Promise<SceneReader> {
  const key = JSON.stringify(job.source);
  const cached = readers.get(key);
  if (cached) return cached;
  {
    if (readers.size >= MAX_OPEN_SCENES) {
      const [oldKey, old] = readers.entries().next().value!;
      readers.delete(oldKey);
      old.then((o) => o.close()).catch(() => {});
    }
    const r = openScene(job.source);
    r.catch(() => readers.delete(key));
    readers.set(key, r);
    return r;
  }
}

/** Reads the union of the job's chip windows once: inline when the coordinator shipped it. */
async function readPixels(job: TileJob, union: Window): Promise<Uint16Array> {
  if (job.pixels) return job.pixels;
  return (await reader(job)).readWindow(union);
}

/**
 * Model input for the job's chips, [n, 12, h, w] of raw DN (harmonized when asked), cut out of
 * the union window, and each chip's nodata mask (any band == 0) and count of valid pixels.
 */
export function prepareBatch(pixels: Uint16Array, union: Window, chips: ChipWindow[], harmonize: boolean): { dn: Float32Array; nodata: Uint8Array; valid: number[] } {
  const { width: w, height: h } = chips[0].read;
  const count = w * h;
  const plane = union.width * union.height;
  const dn = new Float32Array(chips.length * 12 * count);
  const nodata = new Uint8Array(chips.length * count);
  const valid: number[] = [];
  chips.forEach((chip, k) => {
    const dx = chip.read.x - union.x;
    const dy = chip.read.y - union.y;
    const nd = nodata.subarray(k * count, (k + 1) * count);
    for (let b = 0; b < 12; b++) {
      const out = (k * 12 + b) * count;
      for (let r = 0; r < h; r++) {
        const src = b * plane + (dy + r) * union.width + dx;
        const dst = out + r * w;
        for (let c = 0; c < w; c++) {
          const v = pixels[src + c];
          if (v === 0) nd[r * w + c] = 1;
          dn[dst + c] = harmonize ? (v > 1000 ? v - 1000 : 0) : v;
        }
      }
    }
    let ok = 0;
    for (let i = 0; i < count; i++) ok += 1 - nd[i];
    valid.push(ok);
  });
  return { dn, nodata, valid };
}

/** Model input and nodata mask of one chip's pixels (already cut to the chip), as one row. */
export function prepareInput(pixels: Uint16Array, count: number, harmonize: boolean): { dn: Float32Array; nodata: Uint8Array; valid: number } {
  const row = { x: 0, y: 0, width: count, height: 1 };
  const { dn, nodata, valid } = prepareBatch(pixels, row, [{ chipIndex: 0, read: row, write: row }], harmonize);
  return { dn, nodata, valid: valid[0] };
}

/** Crops a chip's write window out of a chip-sized raster. */
function crop<T extends Uint8Array | Float32Array>(src: T, chip: ChipWindow, make: (n: number) => T): T {
  const { read, write } = chip;
  const out = make(write.width * write.height);
  const dx = write.x - read.x;
  const dy = write.y - read.y;
  for (let r = 0; r < write.height; r++) {
    const start = (dy + r) * read.width + dx;
    out.set(src.subarray(start, start + write.width) as never, r * write.width);
  }
  return out;
}

/**
 * Chips per onnxruntime run. A job's union window is read once whatever its size; inference runs
 * in batches of at most this many chips, since each extra chip in a batch costs about 120 MB of
 * intermediate tensors per thread with the default models (measured) for no speed gained.
 */
export const INFERENCE_BATCH = 2;

/** Runs the chips that have valid pixels through a model in batches; all-nodata chips get probability 1. */
async function predictActive(m: LoadedModel, dn: Float32Array, valid: number[], h: number, w: number): Promise<Float32Array> {
  const count = h * w;
  const size = 12 * count;
  const out = new Float32Array(valid.length * count).fill(1);
  const active = valid.map((v, k) => (v > 0 ? k : -1)).filter((k) => k >= 0);
  for (let start = 0; start < active.length; start += INFERENCE_BATCH) {
    const part = active.slice(start, start + INFERENCE_BATCH);
    const contiguous = part.every((k, j) => k === part[0] + j);
    // Contiguous chips are a view of the batch tensor; others are gathered.
    const input = contiguous ? dn.subarray(part[0] * size, (part[0] + part.length) * size) : new Float32Array(part.length * size);
    if (!contiguous) part.forEach((k, j) => input.set(dn.subarray(k * size, (k + 1) * size), j * size));
    const probs = await predictProbabilities(m, input, part.length, h, w);
    part.forEach((k, j) => out.set(probs.subarray(j * count, (j + 1) * count), k * count));
  }
  return out;
}

/** One job: read the union window once, run each model once over the batch, one result per chip. */
export async function processJob(task: ChipTask): Promise<TileResult[]> {
  const { job } = task;
  const chips = job.chips;
  const { width: w, height: h } = chips[0].read;
  if (chips.some((c) => c.read.width !== w || c.read.height !== h)) throw new CloudMaskError('BAD_MESSAGE', `tile job ${job.runKey}: chips of one job must have one read size`);
  const count = w * h;
  const union = unionWindow(chips);
  const t0 = performance.now();
  const pixels = await readPixels(job, union);
  const { dn, nodata, valid } = prepareBatch(pixels, union, chips, job.harmonize);
  const t1 = performance.now();
  let cloudProb: Float32Array;
  let shadowProb: Float32Array;
  let t2 = t1;
  let t3 = t1;
  let modelLoadMs = 0;
  if (valid.every((v) => v === 0)) {
    cloudProb = new Float32Array(chips.length * count).fill(1);
    shadowProb = new Float32Array(chips.length * count).fill(1);
  } else {
    const firstUse = !models.has(`cloud|${task.modelsDir}|${job.models.cloud}`) || !models.has(`shadow|${task.modelsDir}|${job.models.shadow}`);
    const [cloudModel, shadowModel] = await Promise.all([model(job.models.cloud, 'cloud', task), model(job.models.shadow, 'shadow', task)]);
    if (firstUse) modelLoadMs = performance.now() - t1;
    cloudProb = await predictActive(cloudModel, dn, valid, h, w);
    t2 = performance.now();
    shadowProb = await predictActive(shadowModel, dn, valid, h, w);
    t3 = performance.now();
    for (let i = 0; i < nodata.length; i++) {
      if (nodata[i]) {
        cloudProb[i] = 1;
        shadowProb[i] = 1;
      }
    }
  }
  const { cloud: ct, shadow: st } = job.thresholds;
  const n = chips.length;
  return chips.map((chip, k) => {
    const tk = performance.now();
    const cloudW = crop(cloudProb.subarray(k * count, (k + 1) * count), chip, (m) => new Float32Array(m));
    const shadowW = crop(shadowProb.subarray(k * count, (k + 1) * count), chip, (m) => new Float32Array(m));
    const nodataW = crop(nodata.subarray(k * count, (k + 1) * count), chip, (m) => new Uint8Array(m));
    const m = cloudW.length;
    const cloudBits = new Uint8Array(m);
    const shadowBits = new Uint8Array(m);
    for (let i = 0; i < m; i++) {
      cloudBits[i] = cloudW[i] > ct ? 1 : 0;
      shadowBits[i] = shadowW[i] > st ? 1 : 0;
    }
    const result: TileResult = {
      type: 'tile-result',
      v: 1,
      runKey: job.runKey,
      chipIndex: chip.chipIndex,
      worker: task.worker,
      write: chip.write,
      cloud: packBits(cloudBits),
      shadow: packBits(shadowBits),
      nodata: packBits(nodataW),
      skipped: valid[k] === 0,
      // Shared stages are split evenly over the job's chips.
      timings: { readMs: (t1 - t0) / n, cloudMs: (t2 - t1 - modelLoadMs) / n, shadowMs: (t3 - t2) / n, thresholdMs: performance.now() - tk, modelLoadMs: k === 0 ? modelLoadMs : 0 },
    };
    if (job.withProbabilities) {
      result.cloudProb = cloudW;
      result.shadowProb = shadowW;
    }
    return result;
  });
}

/** Piscina entry: errors come back as data so their code survives the thread boundary. */
export default async function run(task: ChipTask): Promise<ChipReply> {
  try {
    return { ok: true, results: await processJob(task) };
  } catch (err) {
    return { ok: false, error: toErrorData(err) };
  }
}
