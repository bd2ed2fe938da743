/**
 * From stitched flags to files: merge (threshold already done by the workers; OR with the
 * product mask, disk dilation, optional small-component removal), then the mask and the
 * optional classes, probabilities and quick-look. Every file is written to a temp name and
 * renamed, so a failed run leaves no output.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { writeQuicklook } from '../raster/quicklook.ts';
import type { SceneReader } from '../raster/types.ts';
import { CloudMaskError } from '../shared/errors.ts';
import type { WorkflowParams } from '../shared/params.ts';
import { mergeMask } from './merge/index.ts';
import { classify, FLAG_CLOUD, FLAG_SHADOW, mergeInput, type Stitcher } from './stitch.ts';

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
  onStage: (stage: 'merge' | 'write', seconds: number) => void;
}

const since = (t0: number): number => (performance.now() - t0) / 1000;

function pick(flags: Uint8Array, flag: number): Uint8Array {
  const out = new Uint8Array(flags.length);
  for (let i = 0; i < flags.length; i++) out[i] = flags[i] & flag ? 1 : 0;
  return out;
}

export async function writeOutputs(task: OutputPaths, stitcher: Stitcher, reader: SceneReader, params: WorkflowParams, meta: OutputMeta): Promise<{ cloudFraction: number }> {
  const { width, height, flags } = stitcher;
  const t0 = performance.now();
  const merged = mergeMask(mergeInput(flags), width, height, { closingSize: 5, minArea: params.min_area });
  let set = 0;
  for (let i = 0; i < merged.length; i++) set += merged[i];
  meta.onStage('merge', since(t0));

  const t1 = performance.now();
  const geo = reader.geo;
  const written: string[] = [];
  try {
    const metadata = {
      ICM_PARAM_HASH: meta.paramHash,
      ICM_RUN_KEY: meta.runKey,
      ICM_PARAMS: JSON.stringify(params),
      ICM_CLOUD_FRACTION: (set / merged.length).toFixed(6),
    };
    if (task.classes) {
      await writeGeoTiff(task.classes, { width, height, data: classify(flags, merged), geo, metadata: { ICM_CLASSES: '0 clear, 1 cloud, 2 shadow, 3 product-mask-only, 4 nodata, 5 dilation buffer' } });
      written.push(task.classes);
    }
    if (task.probabilities && stitcher.cloudProb && stitcher.shadowProb) {
      const cloudPath = path.join(task.probabilities, 'cloud_probability.tif');
      const shadowPath = path.join(task.probabilities, 'shadow_probability.tif');
      await writeGeoTiff(cloudPath, { width, height, data: stitcher.cloudProb, geo });
      written.push(cloudPath);
      await writeGeoTiff(shadowPath, { width, height, data: stitcher.shadowProb, geo });
      written.push(shadowPath);
    }
    if (task.quicklook) {
      await writeQuicklook(task.quicklook, { reader, cloud: pick(flags, FLAG_CLOUD), shadow: pick(flags, FLAG_SHADOW), width, height });
      written.push(task.quicklook);
    }
    // The mask last: its presence means the run finished (batch skips on it).
    await writeGeoTiff(task.out, { width, height, data: merged, geo, metadata });
  } catch (err) {
    await Promise.all(written.map((p) => rm(p, { force: true })));
    if (err instanceof CloudMaskError) throw err;
    throw new CloudMaskError('OUTPUT_FAILED', `writing outputs for ${task.out}: ${(err as Error).message}`, { cause: err });
  }
  meta.onStage('write', since(t1));
  return { cloudFraction: set / merged.length };
}
