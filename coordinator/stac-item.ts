/**
 * The STAC item written beside each mask, as a pure function of what was written (STAC 1.0.0 with
 * the projection, raster, file, classification and processing extensions; our own fields under
 * `icm:`). The I/O (checksums, files) is in stac.ts. docs/outputs.md shows an example.
 */
import { footprintOf } from '../shared/footprint.ts';
import type { WorkflowParams } from '../shared/params.ts';
import { CLASSES_LEGEND, MASK_LEGEND, type ClassEntry } from './legend.ts';

export const STAC_VERSION = '1.0.0';

/** Schema URLs of the extensions our items use (the vendored test schemas are these versions). */
export const STAC_EXTENSIONS = [
  'https://stac-extensions.github.io/projection/v1.1.0/schema.json',
  'https://stac-extensions.github.io/raster/v1.1.0/schema.json',
  'https://stac-extensions.github.io/file/v2.1.0/schema.json',
  'https://stac-extensions.github.io/classification/v1.1.0/schema.json',
  'https://stac-extensions.github.io/processing/v1.2.0/schema.json',
] as const;

const COG = 'image/tiff; application=geotiff; profile=cloud-optimized';

export type AssetKey = 'mask' | 'classes' | 'classes_categories' | 'cloud_probability' | 'shadow_probability' | 'quicklook';

interface AssetKind {
  title: string;
  type: string;
  roles: string[];
  /** raster:bands data type, for rasters. */
  dataType?: 'uint8' | 'float32';
  classes?: readonly ClassEntry[];
}

const ASSET_KINDS: Record<AssetKey, AssetKind> = {
  mask: { title: 'Cloud and cloud-shadow mask', type: COG, roles: ['data', 'cloud', 'cloud-shadow'], dataType: 'uint8', classes: MASK_LEGEND },
  classes: { title: 'Mask classes', type: COG, roles: ['data', 'classification'], dataType: 'uint8', classes: CLASSES_LEGEND },
  classes_categories: { title: 'Class names of the classes raster (GDAL PAM)', type: 'application/xml', roles: ['metadata'] },
  cloud_probability: { title: 'Cloud probability', type: COG, roles: ['data'], dataType: 'float32' },
  shadow_probability: { title: 'Cloud-shadow probability', type: COG, roles: ['data'], dataType: 'float32' },
  quicklook: { title: 'Quick-look: true colour, cloud yellow, shadow magenta', type: 'image/png', roles: ['overview', 'visual'] },
};

/** A file written for this scene. */
export interface WrittenAsset {
  key: AssetKey;
  /** Relative to the item (or absolute when on another tree). */
  href: string;
  size: number;
  /** Hex sha256 of the file's bytes. */
  sha256: string;
}

export interface ModelDigest {
  /** The model's file name as the parameters name it. */
  file: string;
  /** Hex sha256 of the .onnx file; null when the coordinator could not read it. */
  sha256: string | null;
}

export interface ItemSpec {
  id: string;
  grid: { width: number; height: number; origin: [number, number]; pixelSize: [number, number]; epsg: number | null };
  /** Acquisition time of the input; null = unknown (the processing time is used and said so). */
  datetime: string | null;
  /** Processing time, ISO 8601 UTC. */
  created: string;
  input: { href: string; stacItem: boolean; id: string | null };
  assets: WrittenAsset[];
  params: WorkflowParams;
  paramHash: string;
  runKey: string;
  cloudFraction: number;
  models: { cloud: ModelDigest; shadow: ModelDigest };
  software: { name: string; version: string };
}

export interface BuiltItem {
  item: Record<string, unknown>;
  /** Why the item has no geometry, when it has none. */
  note: string | null;
}

export function buildStacItem(s: ItemSpec): BuiltItem {
  const { width, height, origin, pixelSize, epsg } = s.grid;
  const extent: [number, number, number, number] = [origin[0], origin[1] - height * pixelSize[1], origin[0] + width * pixelSize[0], origin[1]];
  const fp = footprintOf(epsg, extent);
  const properties: Record<string, unknown> = {
    datetime: s.datetime ?? s.created,
    created: s.created,
    'proj:epsg': epsg,
    'proj:shape': [height, width],
    'proj:transform': [pixelSize[0], 0, origin[0], 0, -pixelSize[1], origin[1]],
    'proj:bbox': extent,
    'processing:software': { [s.software.name]: s.software.version },
    'processing:lineage': lineage(s),
    'processing:datetime': s.created,
    'icm:input': s.input.href,
    'icm:params': s.params,
    'icm:param_hash': s.paramHash,
    'icm:run_key': s.runKey,
    'icm:models': s.models,
    'icm:cloud_fraction': Number(s.cloudFraction.toFixed(6)),
  };
  if (s.datetime === null) properties['icm:datetime_is_processing_time'] = true;
  const item: Record<string, unknown> = {
    type: 'Feature',
    stac_version: STAC_VERSION,
    stac_extensions: [...STAC_EXTENSIONS],
    id: s.id,
    geometry: fp.geometry,
    ...(fp.geometry ? { bbox: fp.bbox } : {}),
    properties,
    links: [
      s.input.stacItem
        ? { rel: 'derived_from', href: s.input.href, type: 'application/geo+json', title: s.input.id ?? 'input STAC item' }
        : { rel: 'derived_from', href: s.input.href, title: 'input scene' },
    ],
    assets: Object.fromEntries(s.assets.map((a) => [a.key, asset(a, pixelSize[0])])),
  };
  return { item, note: fp.geometry ? null : fp.reason };
}

function asset(a: WrittenAsset, resolution: number): Record<string, unknown> {
  const kind = ASSET_KINDS[a.key];
  const out: Record<string, unknown> = {
    href: a.href,
    type: kind.type,
    title: kind.title,
    roles: kind.roles,
    'file:size': a.size,
    // A multihash: 0x12 = sha2-256, 0x20 = 32 bytes.
    'file:checksum': `1220${a.sha256}`,
  };
  // No nodata: the mask flags nodata pixels as cloud, the classes raster gives them class 4 and
  // the probabilities set them to 1, so no value stands for "no data" in any of them.
  if (kind.dataType) out['raster:bands'] = [{ data_type: kind.dataType, sampling: 'area', spatial_resolution: resolution }];
  if (kind.classes) {
    out['classification:classes'] = kind.classes.map((c) => ({ value: c.value, name: c.name, description: c.description, color_hint: hex(c.color) }));
  }
  return out;
}

const hex = (c: readonly number[]): string => c.map((v) => v.toString(16).padStart(2, '0')).join('').toUpperCase();

function lineage(s: ItemSpec): string {
  const p = s.params;
  return [
    `Cloud and cloud-shadow mask of ${s.input.id ?? s.input.href} by the FarmVibes.AI-compatible improve_cloud_mask workflow:`,
    `cloud model ${p.cloud_model} (> ${p.cloud_thr}), shadow model ${p.shadow_model} (> ${p.shadow_thr}) on 512-pixel chips,`,
    `ORed with the product mask, dilated with a radius-5 disk${p.min_area > 0 ? `, components under ${p.min_area} pixels removed` : ''}${p.harmonize ? ', DN harmonized (baseline 04.00 offset removed)' : ''}.`,
  ].join(' ');
}
