/**
 * One chip, inside a Piscina thread: read the window, run both models, threshold, bit-pack.
 * Model sessions and scene readers are opened once per thread and reused.
 */
import { openScene } from '../raster/scene-reader.ts';
import type { SceneReader } from '../raster/types.ts';
import { packBits } from '../shared/bitpack.ts';
import { toErrorData, type ErrorData } from '../shared/errors.ts';
import type { TileJob, TileResult } from '../shared/messages.ts';
import { loadModel, predictProbabilities, type LoadedModel } from './models.ts';

export interface ChipTask {
  job: TileJob;
  worker: string;
  modelsDir: string;
  intraOpThreads: number;
}

export type ChipReply = { ok: true; result: TileResult } | { ok: false; error: ErrorData };

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

/** Reads the job's pixels: inline when the coordinator shipped them, else from the source. */
async function readPixels(job: TileJob): Promise<Uint16Array> {
  if (job.pixels) return job.pixels;
  return (await reader(job)).readWindow(job.read);
}

/** Float32 model input of raw DN (harmonized when asked) and the nodata mask (any band == 0). */
export function prepareInput(pixels: Uint16Array, count: number, harmonize: boolean): { dn: Float32Array; nodata: Uint8Array; valid: number } {
  const dn = new Float32Array(12 * count);
  const nodata = new Uint8Array(count);
  for (let b = 0; b < 12; b++) {
    const off = b * count;
    for (let i = 0; i < count; i++) {
      const v = pixels[off + i];
      if (v === 0) nodata[i] = 1;
      dn[off + i] = harmonize ? (v > 1000 ? v - 1000 : 0) : v;
    }
  }
  let valid = 0;
  for (let i = 0; i < count; i++) valid += 1 - nodata[i];
  return { dn, nodata, valid };
}

/** Crops the write window out of a chip-sized raster. */
function crop<T extends Uint8Array | Float32Array>(src: T, job: TileJob, make: (n: number) => T): T {
  const { read, write } = job;
  const out = make(write.width * write.height);
  const dx = write.x - read.x;
  const dy = write.y - read.y;
  for (let r = 0; r < write.height; r++) {
    const start = (dy + r) * read.width + dx;
    out.set(src.subarray(start, start + write.width) as never, r * write.width);
  }
  return out;
}

export async function processChip(task: ChipTask): Promise<TileResult> {
  const { job } = task;
  const count = job.read.width * job.read.height;
  const t0 = performance.now();
  const pixels = await readPixels(job);
  const { dn, nodata, valid } = prepareInput(pixels, count, job.harmonize);
  const t1 = performance.now();
  let cloudProb: Float32Array;
  let shadowProb: Float32Array;
  let t2 = t1;
  let t3 = t1;
  let modelLoadMs = 0;
  if (valid === 0) {
    cloudProb = new Float32Array(count).fill(1);
    shadowProb = new Float32Array(count).fill(1);
  } else {
    const firstUse = !models.has(`cloud|${task.modelsDir}|${job.models.cloud}`) || !models.has(`shadow|${task.modelsDir}|${job.models.shadow}`);
    const [cloudModel, shadowModel] = await Promise.all([model(job.models.cloud, 'cloud', task), model(job.models.shadow, 'shadow', task)]);
    if (firstUse) modelLoadMs = performance.now() - t1;
    cloudProb = await predictProbabilities(cloudModel, dn, 1, job.read.height, job.read.width);
    t2 = performance.now();
    shadowProb = await predictProbabilities(shadowModel, dn, 1, job.read.height, job.read.width);
    t3 = performance.now();
    for (let i = 0; i < count; i++) {
      if (nodata[i]) {
        cloudProb[i] = 1;
        shadowProb[i] = 1;
      }
    }
  }
  const cloudW = crop(cloudProb, job, (n) => new Float32Array(n));
  const shadowW = crop(shadowProb, job, (n) => new Float32Array(n));
  const nodataW = crop(nodata, job, (n) => new Uint8Array(n));
  const n = cloudW.length;
  const cloudBits = new Uint8Array(n);
  const shadowBits = new Uint8Array(n);
  const { cloud: ct, shadow: st } = job.thresholds;
  for (let i = 0; i < n; i++) {
    cloudBits[i] = cloudW[i] > ct ? 1 : 0;
    shadowBits[i] = shadowW[i] > st ? 1 : 0;
  }
  const result: TileResult = {
    type: 'tile-result',
    v: 1,
    runKey: job.runKey,
    chipIndex: job.chipIndex,
    worker: task.worker,
    write: job.write,
    cloud: packBits(cloudBits),
    shadow: packBits(shadowBits),
    nodata: packBits(nodataW),
    skipped: valid === 0,
    timings: { readMs: t1 - t0, cloudMs: t2 - t1 - modelLoadMs, shadowMs: t3 - t2, thresholdMs: performance.now() - t3, modelLoadMs },
  };
  if (job.withProbabilities) {
    result.cloudProb = cloudW;
    result.shadowProb = shadowW;
  }
  return result;
}

/** Piscina entry: errors come back as data so their code survives the thread boundary. */
export default async function run(task: ChipTask): Promise<ChipReply> {
  try {
    return { ok: true, result: await processChip(task) };
  } catch (err) {
    return { ok: false, error: toErrorData(err) };
  }
}
