/**
 * What the ceiling measurement runs inside its threads (see ceiling.ts): decoding source tiles
 * and resampling them to the 10 m grid, and pushing chips already in memory through both models.
 * Each thread opens files and loads models once and reuses them, as the chip threads do.
 */
import { openScene } from '../raster/scene-reader.ts';
import { resampleBilinear } from '../raster/resample.ts';
import { openTiff, readSamples, type TiffFile } from '../raster/tiff-file.ts';
import { prepareInput } from '../worker/chip-input.ts';
import { loadModelPair, predictPair, type ModelPair } from '../worker/models.ts';

export interface DecodeTask {
  /** Band file. */
  href: string;
  /** How many times coarser than the 10 m grid. */
  ratio: number;
  /** Tile indexes [tx, ty] to decode. */
  tiles: [number, number][];
}

export interface DecodeReply {
  tiles: number;
  /** Decoded bytes (uncompressed). */
  bytes: number;
  /** 10 m pixels produced. */
  pixels: number;
}

const files = new Map<string, Promise<TiffFile>>();

function file(href: string): Promise<TiffFile> {
  let f = files.get(href);
  if (!f) {
    f = openTiff(href, 'bench band');
    files.set(href, f);
  }
  return f;
}

/** A block with a one-pixel ring copied from its edge, so bilinear has both taps at the tile border. */
function padEdge(data: Uint16Array, w: number, h: number): Uint16Array {
  const pw = w + 2;
  const out = new Uint16Array(pw * (h + 2));
  for (let j = 0; j < h + 2; j++) {
    const sj = Math.min(h - 1, Math.max(0, j - 1));
    const row = data.subarray(sj * w, (sj + 1) * w);
    out.set(row, j * pw + 1);
    out[j * pw] = row[0]!;
    out[j * pw + w + 1] = row[w - 1]!;
  }
  return out;
}

/** Decodes each tile once and brings it to the 10 m grid (bilinear for coarser bands). */
export async function decodeTiles(task: DecodeTask): Promise<DecodeReply> {
  const f = await file(task.href);
  const tw = f.image.getTileWidth();
  const th = f.image.getTileHeight();
  let bytes = 0;
  let pixels = 0;
  for (const [tx, ty] of task.tiles) {
    const win = { x: tx * tw, y: ty * th, width: Math.min(tw, f.width - tx * tw), height: Math.min(th, f.height - ty * th) };
    const [data] = await readSamples(f, win, [0]);
    bytes += data!.byteLength;
    if (task.ratio === 1) {
      pixels += win.width * win.height;
      continue;
    }
    const r = task.ratio;
    const block = { data: padEdge(data as Uint16Array, win.width, win.height), x: win.x - 1, y: win.y - 1, width: win.width + 2, height: win.height + 2 };
    const target = { x: win.x * r, y: win.y * r, width: win.width * r, height: win.height * r };
    resampleBilinear(block, f.width, f.height, r, target);
    pixels += target.width * target.height;
  }
  return { tiles: task.tiles.length, bytes, pixels };
}

export interface InferTask {
  /** Scene to take a few real chips from (read once, untimed). */
  scene: string;
  modelsDir: string;
  cloudModel: string;
  shadowModel: string;
  intraOpThreads: number;
  /** Chips to run. */
  chips: number;
  /**
   * The window [width, height] each chip runs on (cycled): absent = whole 512x512 chips. The
   * true ceiling passes the chips' write windows: each output pixel inferred once.
   */
  shapes?: [number, number][];
}

export interface InferReply {
  chips: number;
  seconds: number;
  /** Model loading, seconds (0 when already loaded). */
  loadSeconds: number;
}

const pairs = new Map<string, Promise<ModelPair>>();
let inputs: Promise<Float32Array[]> | null = null;

/** Both models as the chip threads hold them (merged into one session when they allow it). */
function modelPair(t: InferTask): Promise<ModelPair> {
  const key = JSON.stringify([t.modelsDir, t.cloudModel, t.shadowModel, t.intraOpThreads]);
  let p = pairs.get(key);
  if (!p) {
    p = loadModelPair(t.cloudModel, t.shadowModel, t.modelsDir, { intraOpNumThreads: t.intraOpThreads });
    pairs.set(key, p);
  }
  return p;
}

/** Four real 512x512 chips of the scene as model input (raw DN, float32). */
export async function chipInputs(scene: string): Promise<Float32Array[]> {
  const { resolveSource } = await import('../raster/source.ts');
  const reader = await openScene(await resolveSource(scene));
  try {
    const { width, height } = reader.geo;
    const spots = [[0, 0], [width - 512, 0], [0, height - 512], [(width - 512) >> 1, (height - 512) >> 1]] as const;
    const out: Float32Array[] = [];
    for (const [x, y] of spots) {
      const px = await reader.readWindow({ x, y, width: 512, height: 512 });
      out.push(prepareInput(px, 512 * 512, false).dn);
    }
    return out;
  } finally {
    await reader.close();
  }
}

/** Model inputs of window shapes cut from the real chips (the top-left corner of one of them), made once per shape. */
const cuts = new Map<string, Float32Array>();

function cutInput(data: Float32Array[], w: number, h: number): Float32Array {
  const key = `${w}x${h}`;
  let out = cuts.get(key);
  if (out) return out;
  const src = data[cuts.size % data.length]!;
  out = new Float32Array(12 * w * h);
  for (let b = 0; b < 12; b++) for (let r = 0; r < h; r++) out.set(src.subarray(b * 512 * 512 + r * 512, b * 512 * 512 + r * 512 + w), b * w * h + r * w);
  cuts.set(key, out);
  return out;
}

/** Runs `chips` chips through both models, as the chip threads do (whole chips, or the windows in `shapes`). */
export async function inferChips(task: InferTask): Promise<InferReply> {
  const t0 = performance.now();
  inputs ??= chipInputs(task.scene);
  const data = await inputs;
  const pair = await modelPair(task);
  const shapes = task.shapes ?? [[512, 512]];
  const runs = Array.from({ length: task.chips }, (_, i) => {
    const [w, h] = shapes[i % shapes.length]!;
    return { w, h, input: w === 512 && h === 512 ? data[i % data.length]! : cutInput(data, w, h) };
  });
  // Reused buffers, as the chip threads use: no allocation in the timed loop.
  const n = 512 * 512;
  const buffers = { cloud: new Float32Array(n), shadow: new Float32Array(n), cloudInput: new Float32Array(12 * n), shadowInput: new Float32Array(12 * n) };
  const t1 = performance.now();
  for (const r of runs) await predictPair(pair, r.input, r.h, r.w, buffers);
  return { chips: task.chips, seconds: (performance.now() - t1) / 1000, loadSeconds: (t1 - t0) / 1000 };
}
