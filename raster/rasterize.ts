/**
 * Burning polygons into a pixel grid the way GDAL's gdal_rasterize does by default (no
 * ALL_TOUCHED): a scanline through each row's pixel centres, even-odd over all the rings of a
 * polygon, intersections rounded to the nearest pixel edge (GDAL's llrasterize.cpp,
 * GDALdllImageFilledPolygon). The same rule, not a look-alike, so our mask of a GML equals
 * GDAL's pixel for pixel (tested against gdal_rasterize).
 */

/** A polygon in map coordinates: rings as flat [x0, y0, x1, y1, ...]; the first is the exterior, the rest are holes. */
export type Polygon = Float64Array[];

/** A north-up grid: upper-left corner and pixel size (both positive, y grows downwards). */
export interface PixelGrid {
  width: number;
  height: number;
  origin: [number, number];
  pixelSize: [number, number];
}

/** Sets `out[row * width + col] = 1` inside each polygon (union over the polygons). */
export function burnPolygons(polygons: readonly Polygon[], grid: PixelGrid, out: Uint8Array = new Uint8Array(grid.width * grid.height)): Uint8Array {
  if (out.length !== grid.width * grid.height) throw new RangeError(`burnPolygons: out holds ${out.length} values, expected ${grid.width}x${grid.height}`);
  for (const polygon of polygons) burnPolygon(toPixelSpace(polygon, grid), grid.width, grid.height, out);
  return out;
}

/**
 * Map coordinates to pixel/line coordinates with GDAL's arithmetic (GDALInvGeoTransform for a
 * north-up grid, then offset + X * scale): where an edge passes exactly through pixel centres,
 * the last bit of rounding decides which side a pixel falls, and it must fall where GDAL's does.
 */
function toPixelSpace(polygon: Polygon, grid: PixelGrid): Polygon {
  const [gt0, gt3] = grid.origin;
  const gt1 = grid.pixelSize[0];
  const gt5 = -grid.pixelSize[1];
  const inv0 = -gt0 / gt1;
  const inv1 = 1 / gt1;
  const inv3 = -gt3 / gt5;
  const inv5 = 1 / gt5;
  return polygon.map((ring) => {
    const out = new Float64Array(ring.length);
    for (let i = 0; i + 1 < ring.length; i += 2) {
      out[i] = inv0 + ring[i]! * inv1;
      out[i + 1] = inv3 + ring[i + 1]! * inv5;
    }
    return out;
  });
}

function burnPolygon(rings: Polygon, width: number, height: number, out: Uint8Array): void {
  let minY = Infinity;
  let maxY = -Infinity;
  for (const ring of rings) {
    for (let i = 1; i < ring.length; i += 2) {
      minY = Math.min(minY, ring[i]!);
      maxY = Math.max(maxY, ring[i]!);
    }
  }
  if (!(minY <= maxY)) return;
  const rowFrom = Math.max(0, Math.floor(minY));
  const rowTo = Math.min(height - 1, Math.floor(maxY));
  const xs: number[] = [];
  for (let row = rowFrom; row <= rowTo; row++) {
    const y = row + 0.5;
    xs.length = 0;
    for (const ring of rings) crossings(ring, y, row, width, out, xs);
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) fillSpan(out, row, width, xs[k]!, xs[k + 1]! - 1);
  }
}

/**
 * The ring's crossings of the line at height `y` (rounded to pixel edges) pushed onto `xs`.
 * A horizontal edge lying on the line is filled at once when the ring's inside is above it (a
 * bottom edge), whichever way the ring runs, as GDAL does (measured with gdal_rasterize on both
 * orientations of exteriors and holes): a bottom edge through pixel centres is burned once, a top
 * edge is not.
 */
function crossings(ring: Float64Array, y: number, row: number, width: number, out: Uint8Array, xs: number[]): void {
  const n = ring.length >> 1;
  // Positive area in pixel space (y down): the inside is above an edge that runs right to left.
  const bottomRunsLeft = signedArea(ring) > 0;
  for (let i = 0; i < n; i++) {
    // GDAL's edge order: (last, first), then (0, 1), (1, 2), ...
    const a = i === 0 ? n - 1 : i - 1;
    let x1 = ring[2 * a]!;
    let y1 = ring[2 * a + 1]!;
    let x2 = ring[2 * i]!;
    let y2 = ring[2 * i + 1]!;
    if ((y1 < y && y2 < y) || (y1 > y && y2 > y)) continue;
    if (y1 > y2) {
      [x1, x2] = [x2, x1];
      [y1, y2] = [y2, y1];
    } else if (y1 === y2) {
      if (x1 !== x2 && x1 > x2 === bottomRunsLeft) fillSpan(out, row, width, Math.floor(Math.min(x1, x2) + 0.5), Math.floor(Math.max(x1, x2) + 0.5) - 1);
      continue;
    }
    if (y < y2 && y >= y1) xs.push(Math.floor(((y - y1) * (x2 - x1)) / (y2 - y1) + x1 + 0.5));
  }
}

/** Twice the shoelace area of a ring of flat [x, y, ...] points. */
function signedArea(ring: Float64Array): number {
  let a = 0;
  const n = ring.length >> 1;
  for (let i = 0, j = n - 1; i < n; j = i++) a += ring[2 * j]! * ring[2 * i + 1]! - ring[2 * i]! * ring[2 * j + 1]!;
  return a;
}

/** Pixels from..to (inclusive) of `row`, clipped to the grid. */
function fillSpan(out: Uint8Array, row: number, width: number, from: number, to: number): void {
  const a = Math.max(0, from);
  const b = Math.min(width - 1, to);
  if (a <= b) out.fill(1, row * width + a, row * width + b + 1);
}
