/**
 * Bit-packed 0/1 masks: one bit per pixel, row-major, LSB first in each byte (numpy's
 * packbits(bitorder='little') order). A 512x512 chip mask is 32 KiB.
 */

export function packedLength(count: number): number {
  return (count + 7) >>> 3;
}

/** Packs `values[i] !== 0` into bits. */
export function packBits(values: ArrayLike<number>, count = values.length): Uint8Array {
  const out = new Uint8Array(packedLength(count));
  for (let i = 0; i < count; i++) if (values[i] !== 0) out[i >>> 3] |= 1 << (i & 7);
  return out;
}

/** Bit `i` of a packed mask. */
export function getBit(packed: Uint8Array, i: number): number {
  return (packed[i >>> 3] >>> (i & 7)) & 1;
}
