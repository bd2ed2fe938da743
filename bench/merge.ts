/**
 * d: the coordinator's merge (coordinator/merge mergeMask: dilation by the radius-5 disk, no
 * min_area) alone, on a real full-size 10980x10980 mask (OmniCloudMask output for T19GBQ).
 */
import path from 'node:path';
import { mergeMask } from '../coordinator/merge/index.ts';
import { closeTiff, openTiff, readSamples } from '../raster/tiff-file.ts';
import { REPO } from './scene.ts';

export const MERGE_MASK = path.resolve(REPO, '..', 'shared', 'data', 'mask-T19GBQ-omnicloudmask', 'S2A_MSIL2A_20170725T142751_N9999_R053_T19GBQ_20240410T040247_expected_output.tif');

export interface MergeResult {
  width: number;
  height: number;
  seconds: number[];
  /** Fraction flagged before and after the merge. */
  inputFraction: number;
  outputFraction: number;
}

export async function measureMerge(reps: number): Promise<MergeResult> {
  const f = await openTiff(MERGE_MASK, 'merge benchmark mask');
  let classes: Uint8Array;
  try {
    const [data] = await readSamples(f, { x: 0, y: 0, width: f.width, height: f.height }, [0]);
    classes = data as Uint8Array;
  } finally {
    await closeTiff(f.tiff);
  }
  // Any nonzero class (thick, thin cloud, shadow) is flagged, as a product mask would be.
  const flags = new Uint8Array(classes.length);
  let set = 0;
  for (let i = 0; i < classes.length; i++) set += flags[i] = classes[i] ? 1 : 0;
  const seconds: number[] = [];
  let out: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    out = mergeMask(flags, f.width, f.height, { closingSize: 5, minArea: 0 });
    seconds.push((performance.now() - t0) / 1000);
  }
  let after = 0;
  for (let i = 0; i < out.length; i++) after += out[i]!;
  return { width: f.width, height: f.height, seconds, inputFraction: set / flags.length, outputFraction: after / out.length };
}
