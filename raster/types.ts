/**
 * Plain-data types of the raster layer. Everything here is serializable (it travels inside tile
 * jobs between processes) except {@link SceneReader}, which is the interface of an open scene.
 */

/** Plain, serializable description of a scene source (it travels inside tile jobs to other processes). */
export type SceneSource =
  /** One 12-band uint16 GeoTIFF in FarmVibes band order (absolute path or http(s) URL). */
  | { kind: 'stacked'; href: string }
  /**
   * One single-band GeoTIFF per band: 12 hrefs in band order, plus the optional SCL band and,
   * for SAFE folders and STAC items that carry them, the product's own cloud masks.
   */
  | { kind: 'bands'; bands: string[]; scl: string | null; metadata: SceneMetadata; qualityMasks?: QualityMasks };

/** The product's quality-indicator cloud masks (QI_DATA of a SAFE, or a STAC item's mask assets). */
export interface QualityMasks {
  /** MSK_CLASSI_B00 raster (baseline >= 04.00: opaque-cloud, cirrus, snow bands), or null. */
  classi: string | null;
  /** MSK_CLOUDS_B00.gml (baseline < 04.00: OPAQUE and CIRRUS polygons), or null. */
  cloudsGml: string | null;
}

/** What the raster layer knows about the product behind a scene. */
export interface SceneMetadata {
  /** Processing baseline such as "04.00", or null when unknown. */
  processingBaseline: string | null;
  /**
   * True when the provider already removed the baseline-04.00 BOA offset from the DN
   * (Earth Search's `earthsearch:boa_offset_applied`); false when the data is as ESA ships it;
   * null when unknown.
   */
  boaOffsetApplied: boolean | null;
  /** Product or item id, for messages. */
  id: string | null;
  /** Acquisition time (ISO 8601) when the source says it (STAC `datetime`, SAFE PRODUCT_START_TIME). */
  datetime?: string | null;
  /** The STAC item the scene was read from (path or URL), for the outputs' `derived_from` link. */
  stacItem?: string | null;
}

/** The scene's grid (that of B02 for band sources). */
export interface GeoInfo {
  width: number;
  height: number;
  /** Map coordinates of the upper-left corner of the upper-left pixel. */
  origin: [number, number];
  /** Pixel size in CRS units, both positive as in ModelPixelScale (y grows downwards). */
  pixelSize: [number, number];
  epsg: number | null;
  /** Raw GeoKeyDirectory (tag 34735), copied to outputs as is. */
  geoKeyDirectory: number[] | null;
  /** GeoAsciiParams (tag 34737) without its trailing NUL. */
  geoAsciiParams: string | null;
  /** GeoDoubleParams (tag 34736). */
  geoDoubleParams: number[] | null;
}

/** A pixel window; x and y may be negative and the window may extend past the scene. */
export interface Window {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** An open scene: 12 bands on the 10 m grid of B02. */
export interface SceneReader {
  readonly source: SceneSource;
  readonly geo: GeoInfo;
  readonly metadata: SceneMetadata;
  /**
   * Band-major pixels [bands][win.height][win.width] on the scene grid; pixels outside the scene
   * are 0 (nodata). 20 m and 60 m bands are resampled bilinearly, as a pure function of global
   * pixel coordinates, so any window gives the same values as a whole-scene read.
   * `bands` (0-based indexes in FarmVibes order) reads only those bands, in that order; all 12
   * when omitted. `out`, when given, receives the pixels (it must hold exactly bands x height x
   * width values) and is returned, so a caller can reuse one buffer.
   */
  readWindow(win: Window, bands?: readonly number[], out?: Uint16Array): Promise<Uint16Array>;
  close(): Promise<void>;
}
