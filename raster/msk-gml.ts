/**
 * The cloud mask of Sentinel-2 products before processing baseline 04.00:
 * QI_DATA/MSK_CLOUDS_B00.gml, an eop:Mask of eop:MaskFeature polygons (GML 3.2, gml:posList in
 * the tile's projected CRS, easting northing), each typed OPAQUE or CIRRUS. Read with regexes, as
 * safe.ts reads MTD_MSIL2A.xml: the format is fixed and an XML dependency would buy nothing.
 */
import { CloudMaskError } from '../shared/errors.ts';
import { burnPolygons, type PixelGrid, type Polygon } from './rasterize.ts';

/** Mask types that count as cloud (the GML has no others; anything else is ignored). */
export const GML_CLOUD_TYPES: readonly string[] = ['OPAQUE', 'CIRRUS'];

export interface MaskFeature {
  /** eop:maskType, e.g. "OPAQUE" or "CIRRUS". */
  type: string;
  polygon: Polygon;
}

export interface MaskGml {
  /** EPSG code from the envelope's srsName (urn:ogc:def:crs:EPSG:8.7:32607), null when absent. */
  epsg: number | null;
  /** gml:Envelope as [minX, minY, maxX, maxY], null when absent. */
  envelope: [number, number, number, number] | null;
  features: MaskFeature[];
}

/** Parses an MSK_CLOUDS GML; `where` names it in errors. A mask without members (a clear tile) is valid. */
export function parseMaskGml(xml: string, where: string): MaskGml {
  if (!/<(?:\w+:)?Mask[\s>]/.test(xml)) throw new CloudMaskError('BAD_INPUT', `${where} is not a Sentinel-2 mask GML (no eop:Mask element)`);
  const srs = /srsName="[^"]*EPSG:(?:[\d.]*:)?(\d+)"/.exec(xml);
  const features: MaskFeature[] = [];
  for (const m of xml.matchAll(/<(\w+:)?MaskFeature[\s>][\s\S]*?<\/\1?MaskFeature>/g)) {
    const block = m[0];
    const type = /<(?:\w+:)?maskType[^>]*>\s*([^<\s]+)\s*</.exec(block)?.[1] ?? '';
    for (const poly of block.matchAll(/<(?:\w+:)?Polygon[\s>][\s\S]*?<\/(?:\w+:)?Polygon>/g)) {
      features.push({ type, polygon: parsePolygon(poly[0], `${where} feature ${type || '?'}`) });
    }
  }
  return { epsg: srs ? Number(srs[1]) : null, envelope: parseEnvelope(xml, where), features };
}

function parseEnvelope(xml: string, where: string): [number, number, number, number] | null {
  const lower = /<(?:\w+:)?lowerCorner>([^<]*)</.exec(xml)?.[1];
  const upper = /<(?:\w+:)?upperCorner>([^<]*)</.exec(xml)?.[1];
  if (lower === undefined || upper === undefined) return null;
  const [x0, y0] = numbers(lower, where);
  const [x1, y1] = numbers(upper, where);
  return [x0!, y0!, x1!, y1!];
}

/** Exterior then interiors, each a closed gml:posList (gml:LinearRing). */
function parsePolygon(block: string, where: string): Polygon {
  const rings: Float64Array[] = [];
  for (const part of block.matchAll(/<(?:\w+:)?(exterior|interior)>([\s\S]*?)<\/(?:\w+:)?\1>/g)) {
    const m = /<(?:\w+:)?posList([^>]*)>([^<]*)</.exec(part[2]!);
    if (!m) throw new CloudMaskError('BAD_INPUT', `${where}: a ring without gml:posList (only posList rings are read)`);
    const dim = Number(/srsDimension="(\d)"/.exec(m[1]!)?.[1] ?? 2);
    const values = numbers(m[2]!, where);
    if (values.length % dim !== 0 || values.length / dim < 4) throw new CloudMaskError('BAD_INPUT', `${where}: a ring of ${values.length} numbers is not a closed ring of ${dim}-D points`);
    const ring = new Float64Array((values.length / dim) * 2);
    for (let i = 0, j = 0; i < values.length; i += dim, j += 2) {
      ring[j] = values[i]!;
      ring[j + 1] = values[i + 1]!;
    }
    if (part[1] === 'exterior') rings.unshift(ring);
    else rings.push(ring);
  }
  if (rings.length === 0) throw new CloudMaskError('BAD_INPUT', `${where}: a polygon without an exterior ring`);
  return rings;
}

function numbers(text: string, where: string): number[] {
  const out = text.trim().split(/\s+/).map(Number);
  if (out.some((v) => !Number.isFinite(v))) throw new CloudMaskError('BAD_INPUT', `${where}: coordinates that are not numbers`);
  return out;
}

/** The OPAQUE and CIRRUS polygons burned into `grid` (1 = cloud). */
export function rasterizeCloudGml(gml: MaskGml, grid: PixelGrid): Uint8Array {
  const polygons = gml.features.filter((f) => GML_CLOUD_TYPES.includes(f.type)).map((f) => f.polygon);
  return burnPolygons(polygons, grid);
}
