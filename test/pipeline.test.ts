/**
 * End to end, embedded mode, on the real 29RKH scene: the demo output checked with GDAL, the
 * input kinds agreeing bit for bit, tiling invariance against a whole-image inference.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { writeGeoTiff } from '../raster/geotiff-writer.ts';
import { openScene } from '../raster/scene-reader.ts';
import { resolveSource } from '../raster/source.ts';
import { defaultModelsDir, loadModel, predictProbabilities } from '../worker/models.ts';
import { runCli, SAMPLE } from './helpers/cli.ts';
import { startStaticServer } from './helpers/http-server.ts';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-pipeline-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function readMask(file: string): Promise<Uint8Array> {
  const tiff = await fromFile(file);
  const image = await tiff.getImage();
  const [band] = (await image.readRasters({ interleave: false })) as unknown as Uint8Array[];
  return band;
}

describe('embedded run on the real 29RKH scene', () => {
  test('demo output is the GeoTIFF GDAL expects', async () => {
    const outDir = path.join(tmp, 'demo');
    const r = await runCli(['demo', '--out-dir', outDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/chips\s+9/);
    expect(r.stderr).toMatch(/cloud fraction/);
    const info = JSON.parse(execFileSync('gdalinfo', ['-json', path.join(outDir, 'mask.tif')], { encoding: 'utf8' }));
    expect(info.size).toEqual([1098, 1098]);
    expect(info.geoTransform).toEqual([199980, 100, 0, 2800020, 0, -100]);
    expect(info.stac['proj:epsg']).toBe(32629);
    expect(info.bands).toHaveLength(1);
    expect(info.bands[0].type).toBe('Byte');
    expect(info.bands[0].block).toEqual([512, 512]);
    expect(info.metadata.IMAGE_STRUCTURE.COMPRESSION).toBe('DEFLATE');
    const mask = await readMask(path.join(outDir, 'mask.tif'));
    const set = mask.reduce((a, v) => a + v, 0);
    expect(mask.every((v) => v === 0 || v === 1)).toBe(true);
    // A desert scene with clouds in the north-east: some cloud, far from all.
    expect(set / mask.length).toBeGreaterThan(0.01);
    expect(set / mask.length).toBeLessThan(0.6);
    const png = readFileSync(path.join(outDir, 'quicklook.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
  });

  test('band folder, STAC item, http(s) source and a stacked 12-band GeoTIFF give the identical mask', async () => {
    // The stacked file is made from the same resampled bands.
    const reader = await openScene(await resolveSource(SAMPLE));
    const { width, height } = reader.geo;
    const stack = await reader.readWindow({ x: 0, y: 0, width, height });
    const stacked = path.join(tmp, 'stacked.tif');
    await writeGeoTiff(stacked, { width, height, bands: 12, data: stack, geo: reader.geo, nodata: 0, predictor: 2 });
    await reader.close();
    const server = await startStaticServer(SAMPLE);
    try {
      const item = JSON.parse(readFileSync(path.join(SAMPLE, 'S2A_29RKH_20200219_0_L2A.json'), 'utf8'));
      for (const asset of Object.values(item.assets) as { href: string }[]) asset.href = `${server.url}/${path.basename(asset.href)}`;
      const remoteItem = path.join(tmp, 'remote-item.json');
      writeFileSync(remoteItem, JSON.stringify(item));
      const inputs = {
        folder: [SAMPLE, 'none'],
        stac: [path.join(SAMPLE, 'S2A_29RKH_20200219_0_L2A.json'), 'none'],
        http: [remoteItem, 'none'],
        stacked: [stacked, 'none'],
      };
      const masks: Record<string, Uint8Array> = {};
      for (const [name, [input, mask]] of Object.entries(inputs)) {
        // Not `${name}.tif`: that is the stacked input itself (--overwrite refusal caught it).
        const out = path.join(tmp, `${name}-mask.tif`);
        const r = await runCli(['run', '--s2-raster', input, '--product-mask', mask, '--out', out, '--quiet']);
        expect(r.code, `${name}: ${r.stderr}`).toBe(0);
        masks[name] = await readMask(out);
      }
      expect(Buffer.from(masks.stac).equals(Buffer.from(masks.folder))).toBe(true);
      expect(Buffer.from(masks.http).equals(Buffer.from(masks.folder))).toBe(true);
      expect(Buffer.from(masks.stacked).equals(Buffer.from(masks.folder))).toBe(true);
    } finally {
      await server.close();
    }
  });

  test('tiling invariance: stitched probabilities equal one whole-image inference', async () => {
    const probDir = path.join(tmp, 'probs');
    const r = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'none', '--out', path.join(tmp, 'inv.tif'), '--probabilities', probDir, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const tiff = await fromFile(path.join(probDir, 'cloud_probability.tif'));
    const [stitched] = (await (await tiff.getImage()).readRasters({ interleave: false })) as unknown as Float32Array[];

    const reader = await openScene(await resolveSource(SAMPLE));
    const { width, height } = reader.geo;
    const pixels = await reader.readWindow({ x: 0, y: 0, width, height });
    await reader.close();
    const dn = Float32Array.from(pixels);
    const model = await loadModel('icm-cloud-cheaplab.onnx', 'cloud', defaultModelsDir());
    // The default model's receptive field (manifest.overlapPx) fits in the 64-pixel overlap margin.
    expect(model.manifest.overlapPx).toBeLessThanOrEqual(64);
    const whole = await predictProbabilities(model, dn, 1, height, width);
    await model.session.release();
    const count = width * height;
    let maxDiff = 0;
    for (let i = 0; i < count; i++) {
      let nodata = false;
      for (let b = 0; b < 12; b++) if (pixels[b * count + i] === 0) nodata = true;
      const expected = nodata ? 1 : whole[i];
      maxDiff = Math.max(maxDiff, Math.abs(expected - stitched[i]));
    }
    expect(maxDiff).toBeLessThan(1e-5);
  });
});
