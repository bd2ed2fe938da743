/**
 * The coordinator's merge step (FarmVibes `merge_cloud_masks_simple` after thresholding):
 * disk dilation, then optional small-object removal and small-hole filling. The mask stays
 * bit-packed from the first step to the last and is unpacked once.
 */
import { CloudMaskError } from '../../shared/errors.ts';
import { removeSmallPacked } from './components.ts';
import { dilatePacked } from './dilate.ts';
import { assertMaskShape, packMask, unpackMask, type PackedMask } from '../../shared/packed-mask.ts';

export { dilateDisk, DiskDilation } from './dilate.ts';
export { removeSmallComponents } from './components.ts';

export interface MergeOptions {
  /** Radius in pixels of the disk the mask is dilated with (FarmVibes `closing_size`). Default 5; 0 skips the dilation. */
  closingSize: number;
  /** Components of cloud, then of clear, with fewer pixels than this are flipped (FarmVibes `min_area`). Default 0 (off). */
  minArea: number;
}

export const MERGE_DEFAULTS: Readonly<MergeOptions> = { closingSize: 5, minArea: 0 };

export function resolveMergeOptions(options: Partial<MergeOptions> = {}): MergeOptions {
  const resolved: MergeOptions = {
    closingSize: options.closingSize ?? MERGE_DEFAULTS.closingSize,
    minArea: options.minArea ?? MERGE_DEFAULTS.minArea,
  };
  if (!Number.isInteger(resolved.closingSize) || resolved.closingSize < 0) {
    throw new CloudMaskError('BAD_OPTION', `options.closingSize must be a non-negative integer, got ${resolved.closingSize}`);
  }
  if (typeof resolved.minArea !== 'number' || Number.isNaN(resolved.minArea)) {
    throw new CloudMaskError('BAD_OPTION', `options.minArea must be a number, got ${resolved.minArea}`);
  }
  return resolved;
}

/**
 * Full merge after thresholding. `flags` is nonzero where any of cloud, shadow, product mask or
 * nodata is set; returns the final mask, 0 = clear, 1 = cloud.
 */
export function mergeMask(flags: Uint8Array, width: number, height: number, options?: Partial<MergeOptions>): Uint8Array {
  assertMaskShape(flags, width, height);
  return unpackMask(mergePacked(packMask(flags, width, height), options));
}

/** mergeMask on a mask that is packed already (the coordinator's stitched planes); returns a new packed mask. */
export function mergePacked(input: PackedMask, options?: Partial<MergeOptions>): PackedMask {
  const { closingSize } = resolveMergeOptions(options);
  return mergeDilated(dilatePacked(input, closingSize), options);
}

/**
 * The rest of the merge on a mask dilated by `closingSize` already (the stitcher dilates chip
 * rows as they complete): small-object removal, in place. Returns `dilated`.
 */
export function mergeDilated(dilated: PackedMask, options?: Partial<MergeOptions>): PackedMask {
  const { minArea } = resolveMergeOptions(options);
  removeSmallPacked(dilated, minArea);
  return dilated;
}
