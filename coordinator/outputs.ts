/**
 * From stitched flags to files: merge (threshold already done by the workers; OR with the
 * product mask, disk dilation, optional small-component removal), then the optional classes,
 * probabilities and quick-look, the mask, and the STAC item describing them all. Rasters are
 * Cloud-Optimized GeoTIFFs (see docs/outputs.md). Every file is written to a temp name and
 * renamed, and a failure removes what this run wrote, so a failed run leaves no output.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { writeQuicklook } from '../raster/quicklook.ts';
import type { GeoInfo, SceneMetadata, SceneReader, SceneSource } from '../raster/types.ts';
import { isUrl } from '../raster/tiff-file.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { WORKFLOW_IO, type WorkflowParams } from '../shared/params.ts';
import { categoryNamesOf, CLASSES_LEGEND, colormapOf } from './legend.ts';
import { mergeDilated, mergePacked } from './merge/index.ts';
import { countSet } from '../shared/packed-mask.ts';
import { describeAsset, itemPathFor, writeStacItem } from './stac.ts';
import type { AssetKey, ModelDigest } from './stac-item.ts';
import { classesOf, mergeInput, planeBytes, type Stitched } from './stitch.ts';

export interface OutputPaths {
  /** The merged mask GeoTIFF. */
  out: string;
  /** Optional classes raster (see CLASS_CODES). */
  classes?: string;
  /** Optional directory for cloud_probability.tif and shadow_probability.tif. */
  probabilities?: string;
  /** Optional quick-look PNG. */
  quicklook?: string;
}

export interface OutputMeta {
  runKey: string;
  paramHash: string;
  /** The scene as the user named it (path or URL), for the STAC item's lineage. */
  input: string;
  /** Checksums of the models, for the STAC item; names only when not given. */
  models?: { cloud: ModelDigest; shadow: ModelDigest };
  onStage: (stage: 'merge' | 'write', seconds: number) => void;
  /** Something worth a line in the log (a STAC item without geometry). */
  onNote?: (message: string) => void;
}

/**
 * Overviews and predictors (docs/outputs.md): the mask's overviews keep a pixel cloud when any
 * pixel under it is (max), the classes' stay real codes (nearest), probabilities are averaged
 * and written with the floating-point predictor. uint8 rasters take no predictor: on a real
 * full-tile mask predictor 2 made the file 5 % larger and the write 0.2-0.3 s slower.
 */
const MASK_STYLE = { overviews: 'max', predictor: 1, bandDescriptions: ['cloud mask: 0 clear, 1 cloud or shadow'] } as const;
const CLASSES_STYLE = {
  overviews: 'nearest',
  predictor: 1,
  bandDescriptions: ['mask classes'],
  colormap: colormapOf(CLASSES_LEGEND),
  categoryNames: categoryNamesOf(CLASSES_LEGEND),
} as const;
const probabilityStyle = (what: string) => ({ overviews: 'average', predictor: 3, bandDescriptions: [`${what} probability`] }) as const;

const since = (t0: number): number => (performance.now() - t0) / 1000;

/** What the outputs need of the scene: its grid and metadata, and its pixels for the quick-look only. */
export interface OutputScene {
  geo: GeoInfo;
  metadata: SceneMetadata;
  source: SceneSource;
  /** Runs `fn` with a reader of the scene (the quick-look's RGB); called only when a quick-look is asked for. */
  withReader<T>(fn: (reader: SceneReader) => Promise<T>): Promise<T>;
}

/** An open reader as an OutputScene. */
export const sceneOf = (reader: SceneReader): OutputScene => ({ geo: reader.geo, metadata: reader.metadata, source: reader.source, withReader: (fn) => fn(reader) });

/** How a scene run gets its outputs written: here (writeOutputs) or on an output thread (output-pool.ts). */
export type OutputWriter = (task: OutputPaths, stitched: Stitched, scene: OutputScene, params: WorkflowParams, meta: OutputMeta) => Promise<{ cloudFraction: number }>;

export async function writeOutputs(task: OutputPaths, stitcher: Stitched, scene: OutputScene, params: WorkflowParams, meta: OutputMeta): Promise<{ cloudFraction: number }> {
  const { width, height } = stitcher;
  const t0 = performance.now();
  const merge = { closingSize: WORKFLOW_IO.fixed.closing_size, minArea: params.min_area };
  // Dilated as the chips came (coordinator/stitch.ts) where it could be: the same bits, computed earlier.
  const dilated = stitcher.dilated;
  const packed = dilated?.radius === merge.closingSize ? mergeDilated(dilated.mask, merge) : mergePacked(mergeInput(stitcher), merge);
  const set = countSet(packed);
  const pixels = width * height;
  meta.onStage('merge', since(t0));

  const t1 = performance.now();
  const geo = scene.geo;
  const written: string[] = [];
  const assets: Array<[AssetKey, string]> = [];
  const wrote = (key: AssetKey, file: string): void => {
    written.push(file);
    assets.push([key, file]);
  };
  try {
    const metadata = {
      ICM_PARAM_HASH: meta.paramHash,
      ICM_RUN_KEY: meta.runKey,
      ICM_PARAMS: JSON.stringify(params),
      ICM_CLOUD_FRACTION: (set / pixels).toFixed(6),
    };
    if (task.classes) {
      await writeGeoTiff(task.classes, { width, height, data: classesOf(stitcher, packed), geo, metadata: { ICM_CLASSES: '0 clear, 1 cloud, 2 shadow, 3 product-mask-only, 4 nodata, 5 dilation buffer' }, ...CLASSES_STYLE });
      wrote('classes', task.classes);
      wrote('classes_categories', `${task.classes}.aux.xml`);
    }
    if (task.probabilities && stitcher.cloudProb && stitcher.shadowProb) {
      const cloudPath = path.join(task.probabilities, 'cloud_probability.tif');
      const shadowPath = path.join(task.probabilities, 'shadow_probability.tif');
      await writeGeoTiff(cloudPath, { width, height, data: stitcher.cloudProb, geo, ...probabilityStyle('cloud') });
      wrote('cloud_probability', cloudPath);
      await writeGeoTiff(shadowPath, { width, height, data: stitcher.shadowProb, geo, ...probabilityStyle('cloud-shadow') });
      wrote('shadow_probability', shadowPath);
    }
    if (task.quicklook) {
      const quicklook = task.quicklook;
      await scene.withReader((reader) => writeQuicklook(quicklook, { reader, cloud: planeBytes(stitcher, 'cloud'), shadow: planeBytes(stitcher, 'shadow'), width, height }));
      wrote('quicklook', task.quicklook);
    }
    // The mask, then its STAC item, last: their presence means the run finished (batch skips on it).
    await writeGeoTiff(task.out, { width, height, data: packed, geo, metadata, ...MASK_STYLE });
    wrote('mask', task.out);
    written.push(itemPathFor(task.out)); // a failure from here on removes the mask, so its item goes too
    await writeItem(task, scene, params, meta, assets, set / pixels);
  } catch (err) {
    // Cleanup must not hide the reason (an item path that is a folder cannot be removed either).
    await Promise.all(written.map((p) => rm(p, { force: true }).catch(() => {})));
    if (err instanceof CloudMaskError) throw err;
    throw new CloudMaskError('OUTPUT_FAILED', `writing outputs for ${task.out}: ${(err as Error).message}`, { cause: err });
  }
  meta.onStage('write', since(t1));
  return { cloudFraction: set / pixels };
}

async function writeItem(task: OutputPaths, scene: OutputScene, params: WorkflowParams, meta: OutputMeta, files: Array<[AssetKey, string]>, cloudFraction: number): Promise<void> {
  const itemPath = itemPathFor(task.out);
  // The mask first among the assets, as readers list them.
  const ordered = [...files.filter(([k]) => k === 'mask'), ...files.filter(([k]) => k !== 'mask')];
  const assets = await Promise.all(ordered.map(([key, file]) => describeAsset(key, file, itemPath)));
  const { geo, metadata: md } = scene;
  const stacItem = md.stacItem ?? null;
  const note = await writeStacItem(itemPath, {
    id: path.basename(task.out).replace(/\.tiff?$/i, ''),
    grid: { width: geo.width, height: geo.height, origin: geo.origin, pixelSize: geo.pixelSize, epsg: geo.epsg },
    datetime: md.datetime ?? null,
    created: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    input: { href: stacItem ?? (isUrl(meta.input) ? meta.input : path.resolve(meta.input)), stacItem: stacItem !== null, id: md.id },
    assets,
    params,
    paramHash: meta.paramHash,
    runKey: meta.runKey,
    cloudFraction,
    models: meta.models ?? { cloud: { file: params.cloud_model, sha256: null }, shadow: { file: params.shadow_model, sha256: null } },
  });
  if (note) meta.onNote?.(`STAC item ${itemPath}: ${note}`);
}
