/** Band naming shared by the source resolvers and the readers. */

/** FarmVibes band order: 12 bands, no B10. */
export const BAND_NAMES = ['B01', 'B02', 'B03', 'B04', 'B05', 'B06', 'B07', 'B08', 'B8A', 'B09', 'B11', 'B12'] as const;

export type BandName = (typeof BAND_NAMES)[number];

/** Index of B02, whose grid is the scene grid. */
export const REFERENCE_BAND = 1;

/** Earth Search v1 asset keys (common names) for each band, in band order. */
export const STAC_COMMON_NAMES: Record<BandName, string> = {
  B01: 'coastal',
  B02: 'blue',
  B03: 'green',
  B04: 'red',
  B05: 'rededge1',
  B06: 'rededge2',
  B07: 'rededge3',
  B08: 'nir',
  B8A: 'nir08',
  B09: 'nir09',
  B11: 'swir16',
  B12: 'swir22',
};

/** SCL classes counted as cloud in the product mask: 3 shadow, 8/9 cloud, 10 cirrus. */
export const SCL_CLOUD_CLASSES: readonly number[] = [3, 8, 9, 10];
