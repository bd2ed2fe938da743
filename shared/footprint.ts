/**
 * A scene grid's footprint in WGS 84 for STAC: a GeoJSON Polygon and its bbox, or, for a
 * footprint across the antimeridian, a MultiPolygon split at 180 degrees with a bbox whose west
 * is greater than its east (both as the STAC and GeoJSON specs ask). Only WGS 84 / UTM grids are
 * projected (all Sentinel-2 tiles are); any other CRS gets a reason instead.
 */
import { crossesAntimeridian, utmFootprint, utmZoneOf, type Extent } from './utm.ts';

type Ring = Array<[number, number]>;

export type Footprint =
  | { geometry: { type: 'Polygon'; coordinates: Ring[] } | { type: 'MultiPolygon'; coordinates: Ring[][] }; bbox: [number, number, number, number] }
  | { geometry: null; reason: string };

export function footprintOf(epsg: number | null, extent: Extent): Footprint {
  const zone = utmZoneOf(epsg);
  if (!zone) return { geometry: null, reason: `CRS ${epsg === null ? 'unknown' : `EPSG:${epsg}`} is not WGS 84 / UTM: footprint not computed` };
  const ring = utmFootprint(zone, extent).map(([lon, lat]) => [round(lon), round(lat)] as [number, number]);
  if (!crossesAntimeridian(ring)) return { geometry: { type: 'Polygon', coordinates: [ring] }, bbox: bboxOf(ring) };
  // Continuous in [0, 360), then cut at 180 into a western part and an eastern part.
  const unwrapped: Ring = ring.map(([lon, lat]) => [lon < 0 ? lon + 360 : lon, lat]);
  const west = clip(unwrapped, (lon) => lon <= 180);
  const east = clip(unwrapped, (lon) => lon >= 180).map(([lon, lat]) => [round(lon - 360), lat] as [number, number]);
  const wb = bboxOf(west);
  const eb = bboxOf(east);
  return {
    geometry: { type: 'MultiPolygon', coordinates: [[west], [east]] },
    bbox: [wb[0], Math.min(wb[1], eb[1]), eb[2], Math.max(wb[3], eb[3])],
  };
}

/** Micro-degree rounding beyond 1e-9 (a tenth of a millimetre) only hides float noise. */
const round = (v: number): number => Math.round(v * 1e9) / 1e9;

function bboxOf(ring: Ring): [number, number, number, number] {
  const lons = ring.map((p) => p[0]);
  const lats = ring.map((p) => p[1]);
  return [Math.min(...lons), Math.min(...lats), Math.max(...lons), Math.max(...lats)];
}

/** Sutherland-Hodgman against the meridian 180 (keep: which side), closed result. */
function clip(ring: Ring, keep: (lon: number) => boolean): Ring {
  const out: Ring = [];
  for (let i = 0; i < ring.length - 1; i++) {
    const a = ring[i]!;
    const b = ring[i + 1]!;
    if (keep(a[0])) out.push(a);
    if (keep(a[0]) !== keep(b[0]) && a[0] !== 180 && b[0] !== 180) {
      const t = (180 - a[0]) / (b[0] - a[0]);
      out.push([180, round(a[1] + t * (b[1] - a[1]))]);
    }
  }
  out.push(out[0]!);
  return out;
}

/**
 * The union of WGS 84 bboxes, some of which may cross the antimeridian (west > east). When one
 * does, longitudes are taken in [0, 360) (a crossing box ends past 360) and wrapped back; a union
 * that would go all the way round is the whole range of longitudes.
 */
export function unionBbox(boxes: ReadonlyArray<readonly [number, number, number, number]>): [number, number, number, number] {
  const crossing = boxes.some((b) => b[0] > b[2]);
  const lon = (v: number): number => (crossing && v < 0 ? v + 360 : v);
  let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [bw, bs, be, bn] of boxes) {
    const west = lon(bw);
    const east = lon(be) < west ? lon(be) + 360 : lon(be);
    w = Math.min(w, west);
    e = Math.max(e, east);
    s = Math.min(s, bs);
    n = Math.max(n, bn);
  }
  if (e - w >= 360) return [-180, s, 180, n];
  const wrap = (v: number): number => (v > 180 ? v - 360 : v);
  return [wrap(w), s, wrap(e), n];
}
