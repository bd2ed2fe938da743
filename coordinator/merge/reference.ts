/**
 * Brute-force references for the merge step, written for obviousness rather than speed. Used
 * only by tests and the benchmark to check the bit-packed code in dilate.ts and components.ts.
 */

/** Every footprint offset [dy, dx] of a disk: dy^2 + dx^2 <= r^2. */
export function diskOffsets(radius: number): Array<[number, number]> {
  const offsets: Array<[number, number]> = [];
  for (let dy = -radius; dy <= radius; dy++) {
    for (let dx = -radius; dx <= radius; dx++) if (dy * dy + dx * dx <= radius * radius) offsets.push([dy, dx]);
  }
  return offsets;
}

/** Window of an image: columns [x0, x0 + w), rows [y0, y0 + h). */
export interface Window {
  x0: number;
  y0: number;
  w: number;
  h: number;
}

/**
 * Per-pixel disk dilation of the whole image, or only of the output pixels inside `window`
 * (still reading the full input, so it checks a full-size result piece by piece).
 */
export function dilateReference(mask: Uint8Array, width: number, height: number, radius: number, window?: Window): Uint8Array {
  const { x0, y0, w, h } = window ?? { x0: 0, y0: 0, w: width, h: height };
  const offsets = diskOffsets(radius);
  const dys = Int32Array.from(offsets, ([dy]) => dy);
  const dxs = Int32Array.from(offsets, ([, dx]) => dx);
  const out = new Uint8Array(w * h);
  for (let y = y0; y < y0 + h; y++) {
    for (let x = x0; x < x0 + w; x++) {
      for (let k = 0; k < dys.length; k++) {
        const yy = y + dys[k];
        const xx = x + dxs[k];
        if (yy >= 0 && yy < height && xx >= 0 && xx < width && mask[yy * width + xx] !== 0) {
          out[(y - y0) * w + (x - x0)] = 1;
          break;
        }
      }
    }
  }
  return out;
}

/**
 * A second, independent dilation: each footprint row is a horizontal segment, so dilate every
 * row by each half-width with a running count of set pixels, then OR the rows the footprint
 * covers. Plain bytes, no bit tricks; fast enough for a full scene.
 */
export function dilateByRowsReference(mask: Uint8Array, width: number, height: number, radius: number): Uint8Array {
  const rowsByHalfWidth = new Map<number, Uint8Array>();
  const halfWidth = (dy: number): number => Math.floor(Math.sqrt(radius * radius - dy * dy) + 1e-9);
  for (let dy = -radius; dy <= radius; dy++) {
    const h = halfWidth(dy);
    if (rowsByHalfWidth.has(h)) continue;
    const d = new Uint8Array(width * height);
    for (let y = 0; y < height; y++) {
      const row = y * width;
      let inWindow = 0; // set pixels in [x - h, x + h]
      for (let x = 0; x < Math.min(h, width); x++) inWindow += mask[row + x] !== 0 ? 1 : 0;
      for (let x = 0; x < width; x++) {
        if (x + h < width && mask[row + x + h] !== 0) inWindow++;
        if (x - h - 1 >= 0 && mask[row + x - h - 1] !== 0) inWindow--;
        d[row + x] = inWindow > 0 ? 1 : 0;
      }
    }
    rowsByHalfWidth.set(h, d);
  }
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let dy = -radius; dy <= radius; dy++) {
      const yy = y + dy;
      if (yy < 0 || yy >= height) continue;
      const d = rowsByHalfWidth.get(halfWidth(dy))!;
      for (let x = 0; x < width; x++) out[y * width + x] |= d[yy * width + x];
    }
  }
  return out;
}

/**
 * skimage remove_small_objects then remove_small_holes (connectivity 2, `< minArea`), by flood
 * fill: each 8-connected component of `value` is collected with a queue and flipped if small.
 */
export function removeSmallReference(mask: Uint8Array, width: number, height: number, minArea: number): Uint8Array {
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) out[i] = mask[i] !== 0 ? 1 : 0;
  if (!(minArea > 0)) return out;
  const visited = new Uint8Array(out.length);
  const queue = new Int32Array(out.length);
  for (const value of [1, 0]) {
    visited.fill(0);
    for (let seed = 0; seed < out.length; seed++) {
      if (out[seed] !== value || visited[seed]) continue;
      let head = 0;
      let tail = 0;
      queue[tail++] = seed;
      visited[seed] = 1;
      while (head < tail) {
        const i = queue[head++];
        const x = i % width;
        const y = (i - x) / width;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const xx = x + dx;
            const yy = y + dy;
            if (xx < 0 || xx >= width || yy < 0 || yy >= height) continue;
            const j = yy * width + xx;
            if (out[j] === value && !visited[j]) {
              visited[j] = 1;
              queue[tail++] = j;
            }
          }
        }
      }
      if (tail < minArea) for (let k = 0; k < tail; k++) out[queue[k]] = 1 - value;
    }
  }
  return out;
}
