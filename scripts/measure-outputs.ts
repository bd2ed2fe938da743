/**
 * `npx tsx scripts/measure-outputs.ts [REPO_ROOT]`: merge + write (writeOutputs) of a full-size
 * 10980 x 10980 scene, flags taken from the real OmniCloudMask T19GBQ mask (cloud = thick or thin
 * cloud, shadow = its shadow class), mask only and mask + classes, three times each; prints wall
 * and CPU seconds. REPO_ROOT (default this checkout) lets the same script time another checkout
 * (e.g. main) for a before/after figure. docs/outputs.md quotes it.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const DATA = path.resolve(root, '..', 'shared', 'data', 'mask-T19GBQ-omnicloudmask');

async function main(): Promise<void> {
  const { writeOutputs } = await import(path.join(root, 'coordinator/outputs.ts'));
  const { Stitcher } = await import(path.join(root, 'coordinator/stitch.ts'));
  const { geoInfoOf, openTiff, readSamples, closeTiff } = await import(path.join(root, 'raster/tiff-file.ts'));
  const { DEFAULT_PARAMS } = await import(path.join(root, 'shared/params.ts'));
  const src = await openTiff(path.join(DATA, readdirSync(DATA).find((n) => n.endsWith('.tif'))!), 'mask');
  const geo = await geoInfoOf(src);
  const [mask] = (await readSamples(src, { x: 0, y: 0, width: src.width, height: src.height }, [0])) as Uint8Array[];
  await closeTiff(src.tiff);
  const stitcher = new Stitcher(geo.width, geo.height, 841, false);
  stitcher.orRaster('cloud', mask!.map((v) => (v === 1 || v === 2 ? 1 : 0)));
  stitcher.orRaster('shadow', mask!.map((v) => (v === 3 ? 1 : 0)));
  // No quick-look is written, so the scene's pixels are never asked for.
  const scene = { geo, metadata: { processingBaseline: null, boaOffsetApplied: null, id: 'T19GBQ' }, source: { kind: 'stacked', href: 'T19GBQ.tif' }, withReader: () => Promise.reject(new Error('no pixels here')) };
  const out = mkdtempSync(path.join(tmpdir(), 'icm-measure-'));
  try {
    for (const classes of [false, false, false, true, true, true]) {
      const stages: Record<string, number> = {};
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      await writeOutputs({ out: path.join(out, 'T19GBQ.tif'), classes: classes ? path.join(out, 'classes.tif') : undefined }, stitcher, scene, DEFAULT_PARAMS, {
        runKey: 'measure',
        paramHash: 'measure',
        input: 'T19GBQ.tif',
        onStage: (s: string, sec: number) => (stages[s] = sec),
      });
      const cpu = process.cpuUsage(c0);
      console.log(`${classes ? 'mask + classes' : 'mask only     '}  merge ${stages.merge!.toFixed(2)} s  write ${stages.write!.toFixed(2)} s  total ${((performance.now() - t0) / 1000).toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

await main();
