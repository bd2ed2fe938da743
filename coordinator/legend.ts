/**
 * What the values of the outputs mean, in one place: the classes raster's colour table and
 * category names, and the STAC classification classes of the mask and the classes raster.
 */
import { CLASS_CODES } from './stitch.ts';

export interface ClassEntry {
  value: number;
  /** Short name (STAC classification names allow letters, digits, - and _). */
  name: string;
  description: string;
  /** Display colour [r, g, b]. */
  color: readonly [number, number, number];
}

/** The classes raster (`--classes`): colours as the quick-look draws cloud (yellow) and shadow (magenta). */
export const CLASSES_LEGEND: readonly ClassEntry[] = [
  { value: CLASS_CODES.clear, name: 'clear', description: 'Clear', color: [0, 0, 0] },
  { value: CLASS_CODES.cloud, name: 'cloud', description: 'Cloud (cloud model above cloud_thr)', color: [255, 255, 0] },
  { value: CLASS_CODES.shadow, name: 'shadow', description: 'Cloud shadow (shadow model above shadow_thr)', color: [255, 0, 255] },
  { value: CLASS_CODES.productOnly, name: 'product_mask_only', description: "Cloud in the product's own mask only", color: [0, 255, 255] },
  { value: CLASS_CODES.nodata, name: 'nodata', description: 'No data (a band is 0)', color: [128, 128, 128] },
  { value: CLASS_CODES.buffer, name: 'dilation_buffer', description: 'Within the dilation radius of a flagged pixel', color: [255, 165, 0] },
];

/** The mask: FarmVibes' two values. */
export const MASK_LEGEND: readonly ClassEntry[] = [
  { value: 0, name: 'clear', description: 'Clear', color: [0, 0, 0] },
  { value: 1, name: 'cloud', description: 'Cloud, shadow, product-mask cloud, nodata or dilation buffer', color: [255, 255, 255] },
];

export const colormapOf = (legend: readonly ClassEntry[]): Array<readonly [number, number, number]> => {
  const out: Array<readonly [number, number, number]> = [];
  for (const c of legend) out[c.value] = c.color;
  return Array.from(out, (c) => c ?? [0, 0, 0]);
};

/** Category names by value (GDAL's CategoryNames: index = value). */
export const categoryNamesOf = (legend: readonly ClassEntry[]): string[] => {
  const out: string[] = [];
  for (const c of legend) out[c.value] = c.name;
  return Array.from(out, (n) => n ?? '');
};
