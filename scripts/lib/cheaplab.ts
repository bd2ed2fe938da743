/**
 * The bundled CheapLab-class models: six features per pixel, the 3x3 means of log(DN + 1) of six
 * bands, then one hidden layer of 1x1 convolutions and one logit.
 *
 * Lean on purpose (docs/models.md has the comparison): the earlier version fed 42 features (six
 * reflectances, the 15 normalized differences of their pairs, and the 3x3 means of those 21),
 * which cost most of the graph's passes over memory. In log space a band ratio is a difference,
 * which the hidden layer forms itself, so the logs keep what the normalized differences gave
 * (scale-free colour, which carries over from the L1C training scene to L2A tiles) at the cost
 * of one Log. Both models read the same features from the same raw-DN input, so in one merged
 * session (worker/onnx-pair.ts) onnxruntime computes them once for both.
 *
 * The same arithmetic exists twice on purpose: {@link computeFeatures} + {@link forwardLogits}
 * in float64 for training, and {@link buildCheapLabOnnx} as the shipped graph. The training
 * script checks that both agree.
 */
import type { ModelRole } from '../../shared/manifest.ts';
import { attr, encodeModel, GraphBuilder } from './onnx-writer.ts';

/** Bands read from the 12-band input: B02, B03, B04, B08, B11, B12. */
export const BAND_SLOTS = [1, 2, 3, 7, 10, 11] as const;
/** Radius of the average pool: 3x3 window, so the receptive field needs 1 px of margin. */
export const POOL_RADIUS = 1;
export const HIDDEN = 16;
/** Per pixel: the 3x3 means of log(DN + LOG_OFFSET) of the six bands. */
export const FEATURE_COUNT = BAND_SLOTS.length;
/** Added to the DN before the log: 1 DN, so nodata (0) gives 0 instead of -Infinity. */
export const LOG_OFFSET = 1;

/** Weights acting on the features in raw DN (unstandardized), as they go into the graph. */
export interface CheapLabWeights {
  w1: Float64Array; // [HIDDEN * FEATURE_COUNT]
  b1: Float64Array; // [HIDDEN]
  w2: Float64Array; // [HIDDEN]
  b2: number;
}

/** Mean over the valid part of a (2r+1)^2 window, like AveragePool with count_include_pad=0. */
export function boxMean(src: Float64Array, width: number, height: number, r: number): Float64Array {
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

/** Feature planes (FEATURE_COUNT of them) from the six band planes in raw DN. */
export function computeFeatures(bands: readonly ArrayLike<number>[], width: number, height: number): Float64Array[] {
  return bands.map((b) => boxMean(Float64Array.from(b, (v) => Math.log(v + LOG_OFFSET)), width, height, POOL_RADIUS));
}

/** The six band planes, in raw DN, of a FarmVibes input [12, H, W]: exactly the values the graph reads. */
export function bandPlanes(input: Float32Array, width: number, height: number): Float64Array[] {
  const plane = width * height;
  return BAND_SLOTS.map((slot) => Float64Array.from(input.subarray(slot * plane, (slot + 1) * plane)));
}

/** The single logit z for the given pixels (probability = sigmoid(z)). */
export function forwardLogits(w: CheapLabWeights, features: readonly Float64Array[], pixels: ArrayLike<number>): Float64Array {
  const out = new Float64Array(pixels.length);
  const F = features.length;
  const x = new Float64Array(F);
  for (let k = 0; k < pixels.length; k++) {
    const p = pixels[k]!;
    for (let f = 0; f < F; f++) x[f] = features[f]![p]!;
    let z = w.b2;
    for (let j = 0; j < HIDDEN; j++) {
      let a = w.b1[j]!;
      for (let f = 0; f < F; f++) a += w.w1[j * F + f]! * x[f]!;
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
 * The ONNX graph: input "input" float32 [N,12,H,W] raw DN -> output "probability" [N,1,H,W]
 * (manifest activation 'probability': the graph ends in its own Sigmoid, which onnxruntime runs
 * several times faster than the worker's JavaScript loop over logits).
 * Gather (the six bands) -> Add 1 -> Log -> AveragePool 3x3 (padding not counted) -> Conv 1x1 +
 * Relu -> Conv 1x1 -> Sigmoid. Both roles take raw DN (manifest inputScale 1) and begin with the
 * same nodes and initializers, so a merged pair with one shared input computes the features once
 * (onnxruntime's common subexpression elimination).
 */
export function buildCheapLabOnnx(w: CheapLabWeights, role: ModelRole, docString: string): Uint8Array {
  const g = new GraphBuilder();
  const nb = BAND_SLOTS.length;
  const picked = g.op('Gather', ['input', g.int64Init('band_slots', [nb], [...BAND_SLOTS])], { axis: attr.int(1) }, 'bands');
  const logs = g.op('Log', [g.op('Add', [picked, g.floatInit('log_offset', [], [LOG_OFFSET])], undefined, 'bands_offset')], undefined, 'log_bands');
  const k = 2 * POOL_RADIUS + 1;
  const feats = g.op('AveragePool', [logs], {
    kernel_shape: attr.ints([k, k]), pads: attr.ints([POOL_RADIUS, POOL_RADIUS, POOL_RADIUS, POOL_RADIUS]),
    strides: attr.ints([1, 1]), count_include_pad: attr.int(0),
  }, 'features');
  const k1 = { kernel_shape: attr.ints([1, 1]) };
  const hidden = g.op('Relu', [g.op('Conv', [feats, g.floatInit('hidden_w', [HIDDEN, FEATURE_COUNT, 1, 1], w.w1), g.floatInit('hidden_b', [HIDDEN], w.b1)], k1, 'hidden_pre')], undefined, 'hidden');
  const logit = g.op('Conv', [hidden, g.floatInit('out_w', [1, HIDDEN, 1, 1], w.w2), g.floatInit('out_b', [1], [w.b2])], k1, 'logit');
  g.op('Sigmoid', [logit], undefined, 'probability');
  const graph = g.build(`icm-${role}-cheaplab`, [{ name: 'input', dims: ['N', 12, 'H', 'W'] }], [{ name: 'probability', dims: ['N', 1, 'H', 'W'] }]);
  return encodeModel({ graph, opset: 13, docString });
}
