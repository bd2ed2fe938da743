/**
 * TIFF predictors applied to one tile before compression (the writer's side; readers undo them):
 * 2 = horizontal differencing of integer samples, 3 = floating-point predictor (libtiff's
 * fpDiff: each row's bytes regrouped most significant byte first, then byte-wise differencing),
 * which lets DEFLATE find the slowly varying exponent and high mantissa bytes of probabilities.
 */

/** Predictor 2 in place on a t x t tile: each sample minus its left neighbour, per row, wrapping. */
export function horizontalDifference(a: Uint8Array | Uint16Array, t: number): void {
  for (let r = 0; r < t; r++) {
    const o = r * t;
    for (let i = t - 1; i > 0; i--) a[o + i] = a[o + i]! - a[o + i - 1]!;
  }
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Predictor 3 on a t x t float32 tile (one sample per pixel): the bytes to compress. */
export function floatingPointDifference(tile: Float32Array, t: number): Uint8Array {
  const src = new Uint8Array(tile.buffer, tile.byteOffset, tile.byteLength);
  const out = new Uint8Array(tile.byteLength);
  const rowBytes = 4 * t;
  for (let r = 0; r < t; r++) {
    const base = r * rowBytes;
    // Plane k holds byte k of each sample counting from the most significant one.
    for (let k = 0; k < 4; k++) {
      const from = littleEndian ? 3 - k : k;
      const plane = base + k * t;
      for (let i = 0; i < t; i++) out[plane + i] = src[base + 4 * i + from]!;
    }
    for (let i = rowBytes - 1; i > 0; i--) out[base + i] = (out[base + i]! - out[base + i - 1]!) & 0xff;
  }
  return out;
}
