/**
 * The messages that travel between coordinator and workers: typed, versioned, checked on
 * arrival. Encoded with msgpackr (`moreTypes` so typed arrays round-trip). Pixels travel by
 * reference (the job names its source and window); `pixels` is only set in inline mode.
 */
import { Packr } from 'msgpackr';
import type { SceneSource, Window } from '../raster/types.ts';
import { CloudMaskError, type ErrorData, isErrorCode } from './errors.ts';

export const PROTOCOL_VERSION = 1;
/** Hard ceiling on any message we accept (inline 12-band 512x512 uint16 pixels are 6 MiB; the
 * server's max_payload must be above it: deploy/nats.conf sets 8MB). */
export const MAX_MESSAGE_BYTES = 7 * 1024 * 1024;

/** One chip of a job: where to read it (chip-sized; may extend past the scene) and what to keep. */
export interface ChipWindow {
  chipIndex: number;
  read: Window;
  /** Write window in scene pixels, inside `read`. */
  write: Window;
  /**
   * Where to run the models: the write window plus the models' margin, inside `read` (see
   * shared/tiling.ts inferenceWindow). Absent = the whole read window, as FarmVibes. Optional
   * within v1 on purpose: a worker that ignores it runs the whole chip, which gives the same
   * bits, and a worker checks it against its own manifests before using it.
   */
  infer?: Window;
}

/**
 * A group of neighbouring chips of one run: the worker reads their union window once and runs
 * them through each model as one batch when the model allows it.
 */
export interface TileJob {
  type: 'tile-job';
  v: 1;
  /** `<sceneId>-<paramHash>`: one run of one scene with one parameter set. */
  runKey: string;
  /** Consecutive chips, in chip-index order. */
  chips: ChipWindow[];
  source: SceneSource;
  models: { cloud: string; shadow: string };
  thresholds: { cloud: number; shadow: number };
  /** Subtract the baseline-04.00 offset of 1000 DN before the models. */
  harmonize: boolean;
  withProbabilities: boolean;
  /** Inline mode only: the union of the chips' read windows, 12 bands, band-major, uint16 DN. */
  pixels?: Uint16Array;
}

/** Most chips one job may carry. */
export const MAX_CHIPS_PER_JOB = 8;

/** The bounding box of the chips' read windows. */
export function unionWindow(chips: ChipWindow[]): Window {
  return boundingWindow(chips.map((c) => c.read));
}

/** The bounding box of `windows` (at least one). */
export function boundingWindow(windows: readonly Window[]): Window {
  const x0 = Math.min(...windows.map((w) => w.x));
  const y0 = Math.min(...windows.map((w) => w.y));
  const x1 = Math.max(...windows.map((w) => w.x + w.width));
  const y1 = Math.max(...windows.map((w) => w.y + w.height));
  return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
}

export interface TileTimings {
  readMs: number;
  /** Both models on this chip (one onnxruntime run when the worker merged them, two otherwise). */
  inferenceMs: number;
  /** Each model alone, when they ran as two sessions; null when one run did both. */
  cloudMs: number | null;
  shadowMs: number | null;
  thresholdMs: number;
  /** Time spent loading model sessions for this chip (first chip of a thread), else 0. */
  modelLoadMs: number;
}

export interface TileResult {
  type: 'tile-result';
  v: 1;
  runKey: string;
  chipIndex: number;
  worker: string;
  write: Window;
  /** Bit-packed (see shared/bitpack.ts) masks of the write window. */
  cloud: Uint8Array;
  shadow: Uint8Array;
  nodata: Uint8Array;
  /** The models were not run: every pixel they would have seen (read window, or inference window) was nodata. */
  skipped: boolean;
  /** Pixels the models ran over for this chip (0 when skipped); absent from older workers. */
  inferredPixels?: number;
  cloudProb?: Float32Array;
  shadowProb?: Float32Array;
  timings: TileTimings;
}

/** Chips that will not succeed: their job went to the dead-letter stream with this reason. */
export interface TileFailure {
  type: 'tile-failure';
  v: 1;
  runKey: string;
  /** The job's first chip. */
  chipIndex: number;
  /** Every chip of the job. */
  chips: number[];
  worker: string;
  deliveries: number;
  error: ErrorData;
}

export type TileOutcome = TileResult | TileFailure;
export type Message = TileJob | TileOutcome;

const packr = new Packr({ moreTypes: true, useRecords: false });

export function encodeMessage(msg: Message): Uint8Array {
  return packr.pack(msg);
}

function bad(where: string, what: string): CloudMaskError {
  return new CloudMaskError('BAD_MESSAGE', `${where}: ${what}`);
}

function isInt(v: unknown, min = 0): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min;
}

function checkWindow(v: unknown, where: string): asserts v is Window {
  const w = v as Window | null;
  if (!w || !isInt(w.width, 1) || !isInt(w.height, 1) || !Number.isInteger(w.x) || !Number.isInteger(w.y)) {
    throw bad(where, 'must be a window {x, y, width, height} of integers');
  }
  if (w.width > 4096 || w.height > 4096) throw bad(where, `window ${w.width}x${w.height} is larger than 4096x4096`);
}

/** Whether window `a` lies inside window `b`. */
function inside(a: Window, b: Window): boolean {
  return a.x >= b.x && a.y >= b.y && a.x + a.width <= b.x + b.width && a.y + a.height <= b.y + b.height;
}

function checkSource(v: unknown, where: string): asserts v is SceneSource {
  const s = v as SceneSource | null;
  if (s && s.kind === 'stacked' && typeof s.href === 'string') return;
  if (s && s.kind === 'bands' && Array.isArray(s.bands) && s.bands.length === 12 && s.bands.every((b) => typeof b === 'string')) return;
  throw bad(where, 'source must be {kind:"stacked", href} or {kind:"bands", bands: 12 hrefs}');
}

function checkPacked(v: unknown, count: number, where: string): void {
  if (!(v instanceof Uint8Array) || v.length !== (count + 7) >>> 3) throw bad(where, `must be ${(count + 7) >>> 3} packed bytes`);
}

function checkProb(v: unknown, count: number, where: string): void {
  if (v !== undefined && !(v instanceof Float32Array && v.length === count)) throw bad(where, `must be a Float32Array of ${count}`);
}

function checkJob(m: TileJob): TileJob {
  const first = Array.isArray(m.chips) ? (m.chips[0] as ChipWindow | undefined)?.chipIndex : undefined;
  const where = `tile job ${m.runKey ?? '?'}#${first ?? '?'}`;
  if (typeof m.runKey !== 'string' || !/^[A-Za-z0-9_-]{1,200}$/.test(m.runKey)) throw bad(where, 'runKey must match [A-Za-z0-9_-]{1,200}');
  if (!Array.isArray(m.chips) || m.chips.length < 1 || m.chips.length > MAX_CHIPS_PER_JOB) throw bad(where, `chips must list 1 to ${MAX_CHIPS_PER_JOB} chips`);
  for (const c of m.chips) {
    if (!c || !isInt(c.chipIndex)) throw bad(where, 'chipIndex must be a non-negative integer');
    checkWindow(c.read, `${where} chip ${c.chipIndex} read`);
    checkWindow(c.write, `${where} chip ${c.chipIndex} write`);
    const { read: r, write: w } = c;
    if (!inside(w, r)) throw bad(where, `chip ${c.chipIndex}: write window must lie inside the read window`);
    if (c.infer !== undefined) {
      checkWindow(c.infer, `${where} chip ${c.chipIndex} infer`);
      if (!inside(w, c.infer) || !inside(c.infer, r)) throw bad(where, `chip ${c.chipIndex}: inference window must lie inside the read window and hold the write window`);
    }
  }
  const union = unionWindow(m.chips);
  checkWindow(union, `${where} union of the read windows`);
  checkSource(m.source, where);
  if (!m.models || typeof m.models.cloud !== 'string' || typeof m.models.shadow !== 'string') throw bad(where, 'models must name {cloud, shadow}');
  const t = m.thresholds;
  if (!t || !(t.cloud >= 0 && t.cloud <= 1) || !(t.shadow >= 0 && t.shadow <= 1)) throw bad(where, 'thresholds must be in [0, 1]');
  if (typeof m.harmonize !== 'boolean' || typeof m.withProbabilities !== 'boolean') throw bad(where, 'harmonize and withProbabilities must be booleans');
  if (m.pixels !== undefined && !(m.pixels instanceof Uint16Array && m.pixels.length === 12 * union.width * union.height)) {
    throw bad(where, `inline pixels must be a Uint16Array of 12x${union.height}x${union.width}`);
  }
  return m;
}

function checkResult(m: TileResult): TileResult {
  const where = `tile result ${m.runKey ?? '?'}#${m.chipIndex ?? '?'}`;
  if (typeof m.runKey !== 'string' || !isInt(m.chipIndex) || typeof m.worker !== 'string') throw bad(where, 'needs runKey, chipIndex, worker');
  checkWindow(m.write, `${where} write`);
  const count = m.write.width * m.write.height;
  checkPacked(m.cloud, count, `${where} cloud`);
  checkPacked(m.shadow, count, `${where} shadow`);
  checkPacked(m.nodata, count, `${where} nodata`);
  checkProb(m.cloudProb, count, `${where} cloudProb`);
  checkProb(m.shadowProb, count, `${where} shadowProb`);
  if (typeof m.skipped !== 'boolean' || !m.timings) throw bad(where, 'needs skipped and timings');
  if (m.inferredPixels !== undefined && !isInt(m.inferredPixels)) throw bad(where, 'inferredPixels must be a non-negative integer');
  return m;
}

function checkFailure(m: TileFailure): TileFailure {
  const where = `tile failure ${m.runKey ?? '?'}#${m.chipIndex ?? '?'}`;
  if (typeof m.runKey !== 'string' || !isInt(m.chipIndex) || !isInt(m.deliveries)) throw bad(where, 'needs runKey, chipIndex, deliveries');
  if (!Array.isArray(m.chips) || !m.chips.every((c) => isInt(c))) throw bad(where, 'needs chips: chip indices');
  if (!m.error || !isErrorCode(m.error.code) || typeof m.error.message !== 'string') throw bad(where, 'needs error {code, message}');
  return m;
}

/** Decodes and validates a message; anything malformed throws CloudMaskError('BAD_MESSAGE'). */
export function decodeMessage(bytes: Uint8Array, expect?: Message['type'] | 'outcome'): Message {
  if (bytes.length > MAX_MESSAGE_BYTES) throw bad('message', `${bytes.length} bytes is over the ${MAX_MESSAGE_BYTES}-byte limit`);
  let m: unknown;
  try {
    m = packr.unpack(bytes);
  } catch (err) {
    throw bad('message', `not msgpack (${(err as Error).message})`);
  }
  const msg = m as Message | null;
  if (!msg || typeof msg !== 'object') throw bad('message', 'not an object');
  if (msg.v !== PROTOCOL_VERSION) throw bad('message', `unsupported version ${String((msg as { v?: unknown }).v)} (this build speaks v${PROTOCOL_VERSION})`);
  const ok = expect === undefined || msg.type === expect || (expect === 'outcome' && (msg.type === 'tile-result' || msg.type === 'tile-failure'));
  if (!ok) throw bad('message', `expected ${expect}, got type ${String(msg.type)}`);
  switch (msg.type) {
    case 'tile-job':
      return checkJob(msg);
    case 'tile-result':
      return checkResult(msg);
    case 'tile-failure':
      return checkFailure(msg);
    default:
      throw bad('message', `unknown type ${String((msg as { type?: unknown }).type)}`);
  }
}

export function decodeJob(bytes: Uint8Array): TileJob {
  return decodeMessage(bytes, 'tile-job') as TileJob;
}

export function decodeOutcome(bytes: Uint8Array): TileOutcome {
  return decodeMessage(bytes, 'outcome') as TileOutcome;
}
