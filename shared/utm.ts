/**
 * UTM (WGS 84, EPSG:326zz north / 327zz south) to geographic WGS 84 longitude/latitude, for STAC
 * footprints. Inverse transverse Mercator by Krüger's series to third order in n (Karney 2011,
 * "Transverse Mercator with an accuracy of a few nanometers"; the truncation error is below a
 * millimetre within a zone and its Sentinel-2 overlap). Pure arithmetic: no PROJ, no shelling out.
 */

const A_AXIS = 6378137;
const F = 1 / 298.257223563;
const K0 = 0.9996;
const N = F / (2 - F);
const RECTIFYING = (A_AXIS / (1 + N)) * (1 + (N * N) / 4 + (N ** 4) / 64);
const BETA = [N / 2 - (2 * N * N) / 3 + (37 * N ** 3) / 96, (N * N) / 48 + N ** 3 / 15, (17 * N ** 3) / 480];
const DELTA = [2 * N - (2 * N * N) / 3 - 2 * N ** 3, (7 * N * N) / 3 - (8 * N ** 3) / 5, (56 * N ** 3) / 15];

export interface UtmZone {
  zone: number;
  south: boolean;
}

/** The UTM zone of a WGS 84 / UTM EPSG code, or null for any other CRS. */
export function utmZoneOf(epsg: number | null): UtmZone | null {
  if (epsg === null || !Number.isInteger(epsg)) return null;
  const zone = epsg % 100;
  const base = epsg - zone;
  if ((base !== 32600 && base !== 32700) || zone < 1 || zone > 60) return null;
  return { zone, south: base === 32700 };
}

/** [longitude, latitude] in degrees of UTM easting/northing `x`, `y` (metres) in `zone`. */
export function utmToLonLat(zone: UtmZone, x: number, y: number): [number, number] {
  const xi = (y - (zone.south ? 10_000_000 : 0)) / (K0 * RECTIFYING);
  const eta = (x - 500_000) / (K0 * RECTIFYING);
  let xiP = xi;
  let etaP = eta;
  for (let j = 1; j <= 3; j++) {
    const b = BETA[j - 1]!;
    xiP -= b * Math.sin(2 * j * xi) * Math.cosh(2 * j * eta);
    etaP -= b * Math.cos(2 * j * xi) * Math.sinh(2 * j * eta);
  }
  const chi = Math.asin(Math.sin(xiP) / Math.cosh(etaP));
  let phi = chi;
  for (let j = 1; j <= 3; j++) phi += DELTA[j - 1]! * Math.sin(2 * j * chi);
  const lambda0 = (zone.zone * 6 - 183) * (Math.PI / 180);
  const lambda = lambda0 + Math.atan2(Math.sinh(etaP), Math.cos(xiP));
  return [(lambda * 180) / Math.PI, (phi * 180) / Math.PI];
}

/** A grid's extent in its own CRS units: [minX, minY, maxX, maxY]. */
export type Extent = [number, number, number, number];

/**
 * The footprint of a UTM extent as a closed, counter-clockwise lon/lat ring, each edge densified
 * into `segments` pieces (a UTM rectangle's edges are curves in lon/lat). Longitudes are wrapped
 * to [-180, 180].
 */
export function utmFootprint(zone: UtmZone, [x0, y0, x1, y1]: Extent, segments = 8): Array<[number, number]> {
  const ring: Array<[number, number]> = [];
  const edge = (ax: number, ay: number, bx: number, by: number): void => {
    for (let s = 0; s < segments; s++) ring.push(utmToLonLat(zone, ax + ((bx - ax) * s) / segments, ay + ((by - ay) * s) / segments));
  };
  // Upper left, lower left, lower right, upper right: counter-clockwise with north up.
  edge(x0, y1, x0, y0);
  edge(x0, y0, x1, y0);
  edge(x1, y0, x1, y1);
  edge(x1, y1, x0, y1);
  ring.push(ring[0]!);
  return ring.map(([lon, lat]) => [lon > 180 ? lon - 360 : lon < -180 ? lon + 360 : lon, lat]);
}

/** True when a ring's longitudes jump by more than 180 degrees between neighbours (it crosses the antimeridian). */
export function crossesAntimeridian(ring: ReadonlyArray<readonly [number, number]>): boolean {
  for (let i = 1; i < ring.length; i++) if (Math.abs(ring[i]![0] - ring[i - 1]![0]) > 180) return true;
  return false;
}
