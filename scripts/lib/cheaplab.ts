/**
 * The bundled CheapLab-class models: fixed normalized-difference indices over six bands, a 3x3
 * average of those features for a little spatial context, one hidden layer of 1x1 convolutions.
 *
 * The same arithmetic exists twice on purpose: {@link computeFeatures} + {@link forwardLogits}
 * in float64 for training, and {@link buildCheapLabOnnx} as the shipped graph. The training
 * script checks that both agree.
 */
import type { ModelRole } from '../../shared/manifest.ts';
import { attr, encodeModel, GraphBuilder } from './onnx-writer.ts';

/** Bands read from the 12-band input: B02, B03, B04, B08, B11, B12. */
export const BAND_SLOTS = [1, 2, 3, 7, 10, 11] as const;
/** Added to b_i + b_j (reflectance units, i.e. 1 DN) so nodata pixels give 0, not NaN. */
export const ND_EPS = 1e-4;
/** Radius of the average pool: 3x3 window, so the receptive field needs 1 px of margin. */
export const POOL_RADIUS = 1;
export const HIDDEN = 16;

/** All 15 band pairs (i < j) of the six bands, in a fixed order. */
export const ND_PAIRS: ReadonlyArray<readonly [number, number]> = (() => {
  const out: [number, number][] = [];
  for (let i = 0; i < BAND_SLOTS.length; i++) for (let j = i + 1; j < BAND_SLOTS.length; j++) out.push([i, j]);
  return out;
})();

const BASE_FEATURES = BAND_SLOTS.length + ND_PAIRS.length; // 21
/** Per pixel: 6 reflectances, 15 normalized differences, then the 3x3 means of those 21. */
export const FEATURE_COUNT = 2 * BASE_FEATURES; // 42

/** Weights acting on raw (unstandardized) features, as they go into the graph. */
export interface CheapLabWeights {
  w1: Float64Array; // [HIDDEN * FEATURE_COUNT]
  b1: Float64Array; // [HIDDEN]
  w2: Float64Array; // [HIDDEN]
  b2: number;
}

/** Mean over the valid part of a (2r+1)^2 window, like AveragePool with count_include_pad=0. */
function boxMean(src: Float64Array, width: number, height: number, r: number): Float64Array {
  const rows = new Float64Array(src.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let s = 0;
      for (let dx = Math.max(0, x - r); dx <= Math.min(width - 1, x + r); dx++) s += src[y * width + dx]!;
      rows[y * width + x] = s;
    }
  }
  const out = new Float64Array(src.length);
  for (let y = 0; y < height; y++) {
    const y0 = Math.max(0, y - r);
    const y1 = Math.min(height - 1, y + r);
    for (let x = 0; x < width; x++) {
      let s = 0;
      for (let yy = y0; yy <= y1; yy++) s += rows[yy * width + x]!;
      const count = (y1 - y0 + 1) * (Math.min(width - 1, x + r) - Math.max(0, x - r) + 1);
      out[y * width + x] = s / count;
    }
  }
  return out;
}

/** Feature planes (FEATURE_COUNT of them) from the six band planes in reflectance. */
export function computeFeatures(reflectance: readonly ArrayLike<number>[], width: number, height: number): Float64Array[] {
  const plane = width * height;
  const base: Float64Array[] = reflectance.map((b) => Float64Array.from(b));
  for (const [i, j] of ND_PAIRS) {
    const a = base[i]!;
    const b = base[j]!;
    const nd = new Float64Array(plane);
    for (let p = 0; p < plane; p++) nd[p] = (a[p]! - b[p]!) / (a[p]! + b[p]! + ND_EPS);
    base.push(nd);
  }
  return [...base, ...base.map((f) => boxMean(f, width, height, POOL_RADIUS))];
}

/** The six band planes, in reflectance, of a FarmVibes input [12, H, W] scaled by `scale`. */
export function bandPlanes(input: Float32Array, width: number, height: number, scale: number): Float64Array[] {
  const plane = width * height;
  return BAND_SLOTS.map((slot) => {
    const out = new Float64Array(plane);
    for (let p = 0; p < plane; p++) out[p] = input[slot * plane + p]! * scale;
    return out;
  });
}

/** The single logit z for the given pixels (probability = sigmoid(z)). */
export function forwardLogits(w: CheapLabWeights, features: readonly Float64Array[], pixels: ArrayLike<number>): Float64Array {
  const out = new Float64Array(pixels.length);
  const x = new Float64Array(FEATURE_COUNT);
  for (let k = 0; k < pixels.length; k++) {
    const p = pixels[k]!;
    for (let f = 0; f < FEATURE_COUNT; f++) x[f] = features[f]![p]!;
    let z = w.b2;
    for (let j = 0; j < HIDDEN; j++) {
      let a = w.b1[j]!;
      for (let f = 0; f < FEATURE_COUNT; f++) a += w.w1[j * FEATURE_COUNT + f]! * x[f]!;
      if (a > 0) z += w.w2[j]! * a;
    }
    out[k] = z;
  }
  return out;
}

export function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

/**
 * The ONNX graph: input "input" float32 [N,12,H,W] -> output "logits" [N,2,H,W] (cloud, softmax
 * channel 1 = sigmoid(z) with logits [-z/2, z/2]) or [N,1,H,W] (shadow, sigmoid). The cloud graph
 * takes raw DN and scales by 1e-4 itself; the shadow graph takes reflectance (DN x 1e-4), as
 * FarmVibes' models do.
 */
export function buildCheapLabOnnx(w: CheapLabWeights, role: ModelRole, docString: string): Uint8Array {
  const g = new GraphBuilder();
  const nb = BAND_SLOTS.length;
  const picked = g.op('Gather', ['input', g.int64Init('band_slots', [nb], [...BAND_SLOTS])], { axis: attr.int(1) }, 'bands');
  const refl = role === 'cloud'
    ? g.op('Mul', [picked, g.floatInit('dn_to_reflectance', [], [1e-4])], undefined, 'reflectance')
    : picked;
  const np = ND_PAIRS.length;
  const num = new Float32Array(np * nb);
  const den = new Float32Array(np * nb);
  ND_PAIRS.forEach(([i, j], k) => {
    num[k * nb + i] = 1;
    num[k * nb + j] = -1;
    den[k * nb + i] = 1;
    den[k * nb + j] = 1;
  });
  const k1 = { kernel_shape: attr.ints([1, 1]) };
  const numer = g.op('Conv', [refl, g.floatInit('nd_num_w', [np, nb, 1, 1], num)], k1, 'nd_num');
  const denom = g.op('Conv', [refl, g.floatInit('nd_den_w', [np, nb, 1, 1], den), g.floatInit('nd_den_b', [np], new Array(np).fill(ND_EPS))], k1, 'nd_den');
  const nd = g.op('Div', [numer, denom], undefined, 'nd');
  const base = g.op('Concat', [refl, nd], { axis: attr.int(1) }, 'pixel_features');
  const k = 2 * POOL_RADIUS + 1;
  const pooled = g.op('AveragePool', [base], {
    kernel_shape: attr.ints([k, k]), pads: attr.ints([POOL_RADIUS, POOL_RADIUS, POOL_RADIUS, POOL_RADIUS]),
    strides: attr.ints([1, 1]), count_include_pad: attr.int(0),
  }, 'context_features');
  const feats = g.op('Concat', [base, pooled], { axis: attr.int(1) }, 'features');
  const hidden = g.op('Relu', [g.op('Conv', [feats, g.floatInit('hidden_w', [HIDDEN, FEATURE_COUNT, 1, 1], w.w1), g.floatInit('hidden_b', [HIDDEN], w.b1)], k1, 'hidden_pre')], undefined, 'hidden');
  let outW: Float32Array;
  let outB: number[];
  if (role === 'cloud') {
    outW = new Float32Array(2 * HIDDEN);
    for (let j = 0; j < HIDDEN; j++) {
      outW[j] = -w.w2[j]! / 2;
      outW[HIDDEN + j] = w.w2[j]! / 2;
    }
    outB = [-w.b2 / 2, w.b2 / 2];
  } else {
    outW = Float32Array.from(w.w2);
    outB = [w.b2];
  }
  const channels = outB.length;
  g.op('Conv', [hidden, g.floatInit('out_w', [channels, HIDDEN, 1, 1], outW), g.floatInit('out_b', [channels], outB)], k1, 'logits');
  const graph = g.build(`icm-${role}-cheaplab`, [{ name: 'input', dims: ['N', 12, 'H', 'W'] }], [{ name: 'logits', dims: ['N', channels, 'H', 'W'] }]);
  return encodeModel({ graph, opset: 13, docString });
}
