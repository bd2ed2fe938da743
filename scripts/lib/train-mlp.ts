/**
 * Deterministic training of the CheapLab head (one hidden ReLU layer, one logit) in float64:
 * class-weighted binary cross-entropy, Adam, cosine learning-rate decay, mini-batches in a
 * seeded shuffle order. Same data + same options = bit-identical weights.
 */
import { type CheapLabWeights, HIDDEN } from './cheaplab.ts';

export interface TrainOptions {
  seed: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
}

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = { seed: 20240611, epochs: 8, batchSize: 512, learningRate: 0.01 };

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Standardized {
  /** Features per example. */
  F: number;
  x: Float64Array; // [n * F], row-major
  mean: Float64Array;
  std: Float64Array;
}

/** Pixels of one image used for training: its feature planes, 0/1 targets and chosen pixel indices. */
export interface TrainingSource {
  features: readonly Float64Array[];
  target: ArrayLike<number>;
  pixels: ArrayLike<number>;
}

function standardize(sources: readonly TrainingSource[]): Standardized & { y: Uint8Array } {
  const F = sources[0]!.features.length;
  if (sources.some((src) => src.features.length !== F)) throw new Error('trainCheapLab: sources with different feature counts');
  const n = sources.reduce((s, src) => s + src.pixels.length, 0);
  const x = new Float64Array(n * F);
  const y = new Uint8Array(n);
  let k = 0;
  for (const { features, target, pixels } of sources) {
    for (let i = 0; i < pixels.length; i++, k++) {
      const p = pixels[i]!;
      for (let f = 0; f < F; f++) x[k * F + f] = features[f]![p]!;
      y[k] = target[p] ? 1 : 0;
    }
  }
  const mean = new Float64Array(F);
  const std = new Float64Array(F);
  for (let f = 0; f < F; f++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i * F + f]!;
    const m = s / n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[i * F + f]! - m) ** 2;
    mean[f] = m;
    std[f] = Math.sqrt(v / n) || 1;
  }
  for (let i = 0; i < n; i++) for (let f = 0; f < F; f++) x[i * F + f] = (x[i * F + f]! - mean[f]!) / std[f]!;
  return { F, x, y, mean, std };
}

class Adam {
  private m: Float64Array;
  private v: Float64Array;
  private t = 0;
  constructor(size: number) {
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
  }
  step(params: Float64Array, grad: Float64Array, lr: number): void {
    this.t += 1;
    const c1 = 1 - 0.9 ** this.t;
    const c2 = 1 - 0.999 ** this.t;
    for (let i = 0; i < params.length; i++) {
      const g = grad[i]!;
      this.m[i] = 0.9 * this.m[i]! + 0.1 * g;
      this.v[i] = 0.999 * this.v[i]! + 0.001 * g * g;
      params[i]! -= (lr * (this.m[i]! / c1)) / (Math.sqrt(this.v[i]! / c2) + 1e-8);
    }
  }
}

/** Flat parameter vector layout for F features: w1 [HIDDEN*F], b1 [HIDDEN], w2 [HIDDEN], b2 [1]. */
interface Layout {
  F: number;
  O_B1: number;
  O_W2: number;
  O_B2: number;
  N_PARAMS: number;
}

function layout(F: number): Layout {
  const O_B1 = HIDDEN * F;
  const O_W2 = O_B1 + HIDDEN;
  const O_B2 = O_W2 + HIDDEN;
  return { F, O_B1, O_W2, O_B2, N_PARAMS: O_B2 + 1 };
}

/** Adds the gradient of one weighted example to `grad`; returns its loss. */
function accumulate(L: Layout, theta: Float64Array, grad: Float64Array, x: Float64Array, off: number, y: number, weight: number, h: Float64Array): number {
  const { F, O_B1, O_W2, O_B2 } = L;
  let z = theta[O_B2]!;
  for (let j = 0; j < HIDDEN; j++) {
    let a = theta[O_B1 + j]!;
    for (let f = 0; f < F; f++) a += theta[j * F + f]! * x[off + f]!;
    h[j] = a > 0 ? a : 0;
    z += theta[O_W2 + j]! * h[j]!;
  }
  const p = 1 / (1 + Math.exp(-z));
  const dz = weight * (p - y);
  grad[O_B2]! += dz;
  for (let j = 0; j < HIDDEN; j++) {
    grad[O_W2 + j]! += dz * h[j]!;
    if (h[j]! > 0) {
      const dh = dz * theta[O_W2 + j]!;
      grad[O_B1 + j]! += dh;
      for (let f = 0; f < F; f++) grad[j * F + f]! += dh * x[off + f]!;
    }
  }
  return -weight * Math.log(y ? p + 1e-12 : 1 - p + 1e-12);
}

export interface TrainResult {
  weights: CheapLabWeights;
  lossPerEpoch: number[];
}

/**
 * Trains on the pixels of all sources together, targets 0/1; positives and negatives
 * each carry half the total weight, which is what balanced accuracy rewards.
 */
export function trainCheapLab(sources: readonly TrainingSource[], opts: TrainOptions = DEFAULT_TRAIN_OPTIONS): TrainResult {
  const { F, x, y, mean, std } = standardize(sources);
  const L = layout(F);
  const { O_B1, O_W2, N_PARAMS } = L;
  const n = y.length;
  let positives = 0;
  for (let k = 0; k < n; k++) positives += y[k]!;
  const wPos = n / (2 * positives);
  const wNeg = n / (2 * (n - positives));

  const rnd = mulberry32(opts.seed);
  const theta = new Float64Array(N_PARAMS);
  for (let i = 0; i < O_B1; i++) theta[i] = (rnd() * 2 - 1) * Math.sqrt(6 / F);
  for (let j = 0; j < HIDDEN; j++) theta[O_W2 + j] = (rnd() * 2 - 1) * Math.sqrt(6 / HIDDEN);

  const adam = new Adam(N_PARAMS);
  const grad = new Float64Array(N_PARAMS);
  const h = new Float64Array(HIDDEN);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const lossPerEpoch: number[] = [];
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    const lr = opts.learningRate * 0.5 * (1 + Math.cos((Math.PI * epoch) / opts.epochs));
    let loss = 0;
    for (let start = 0; start < n; start += opts.batchSize) {
      const end = Math.min(n, start + opts.batchSize);
      grad.fill(0);
      for (let k = start; k < end; k++) {
        const i = order[k]!;
        loss += accumulate(L, theta, grad, x, i * F, y[i]!, y[i] ? wPos : wNeg, h);
      }
      for (let i = 0; i < N_PARAMS; i++) grad[i]! /= end - start;
      adam.step(theta, grad, lr);
    }
    lossPerEpoch.push(loss / n);
  }
  return { weights: foldStandardization(L, theta, mean, std), lossPerEpoch };
}

/** Moves (x - mean) / std into the first layer so the graph takes raw features. */
function foldStandardization(L: Layout, theta: Float64Array, mean: Float64Array, std: Float64Array): CheapLabWeights {
  const { F, O_B1, O_W2, O_B2 } = L;
  const w1 = new Float64Array(HIDDEN * F);
  const b1 = new Float64Array(HIDDEN);
  for (let j = 0; j < HIDDEN; j++) {
    let b = theta[O_B1 + j]!;
    for (let f = 0; f < F; f++) {
      const w = theta[j * F + f]! / std[f]!;
      w1[j * F + f] = w;
      b -= w * mean[f]!;
    }
    b1[j] = b;
  }
  return { w1, b1, w2: theta.slice(O_W2, O_W2 + HIDDEN), b2: theta[O_B2]! };
}
