/** The CLI's other promises: describe, --params files, --in-memory, --classes, exit codes. */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readGeoTiffMetadata } from '../raster/geotiff-writer.ts';
import { ensureFpnModels, FPN_FILES } from '../scripts/lib/fpn.ts';
import { DATA, runCli, SAMPLE } from './helpers/cli.ts';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-cli-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function band(file: string): Promise<Uint8Array> {
  const image = await (await fromFile(file)).getImage();
  return ((await image.readRasters({ interleave: false })) as unknown as Uint8Array[])[0];
}

describe('improve-cloud-mask CLI', () => {
  test('describe lists the workflow parameters with their defaults', async () => {
    const r = await runCli(['describe']);
    expect(r.code).toBe(0);
    for (const name of ['cloud_thr', 'shadow_thr', 'in_memory', 'cloud_model', 'shadow_model']) expect(r.stdout).toContain(name);
    expect(r.stdout).toMatch(/cloud_thr\s+default 0\.3/);
    expect(r.stdout).toMatch(/shadow_thr\s+default 0\.2/);
    expect(r.stdout).toContain('s2_raster');
    expect(r.stdout).toContain('product_mask');
  });

  test('unknown command and unknown flag exit 2 with a reason', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    const r = await runCli(['run', '--no-such-flag']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no-such-flag/);
  });

  test('--in-memory gives the same mask as window-by-window reading; --params and flags agree; classes are coded', async () => {
    const windowed = path.join(tmp, 'windowed.tif');
    const inMemory = path.join(tmp, 'in-memory.tif');
    const viaParams = path.join(tmp, 'params.tif');
    const classes = path.join(tmp, 'classes.tif');
    const params = path.join(tmp, 'params.yaml');
    writeFileSync(params, 'parameters:\n  cloud_thr: 0.5\n  shadow_thr: null\n  in_memory: true\n');
    const base = ['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--quiet'];
    const runs = await Promise.all([
      runCli([...base, '--out', windowed, '--cloud-thr', '0.5', '--classes', classes]),
      runCli([...base, '--out', inMemory, '--cloud-thr', '0.5', '--in-memory']),
      runCli([...base, '--out', viaParams, '--params', params]),
    ]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const [a, b, c] = await Promise.all([band(windowed), band(inMemory), band(viaParams)]);
    expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true);
    expect(Buffer.from(c).equals(Buffer.from(a))).toBe(true);
    const meta = await readGeoTiffMetadata(viaParams);
    expect(JSON.parse(meta.ICM_PARAMS)).toMatchObject({ cloud_thr: 0.5, shadow_thr: 0.2, in_memory: true });
    // The in_memory choice does not change the output, so it does not change the hash.
    expect(meta.ICM_PARAM_HASH).toBe((await readGeoTiffMetadata(windowed)).ICM_PARAM_HASH);
    const cls = await band(classes);
    for (let i = 0; i < a.length; i++) {
      if (cls[i] > 5) throw new Error(`class code ${cls[i]} at ${i}`);
      // Every flagged pixel has a non-clear class and every clear class is unflagged.
      if ((cls[i] === 0) !== (a[i] === 0)) throw new Error(`pixel ${i}: class ${cls[i]} but mask ${a[i]}`);
    }
    expect(cls.some((v) => v === 5)).toBe(true);
  });

  test('a lower threshold flags more, a higher one less; min_area removes specks', async () => {
    const out = (n: string): string => path.join(tmp, `${n}.tif`);
    const base = ['run', '--s2-raster', SAMPLE, '--product-mask', 'none', '--quiet'];
    const runs = await Promise.all([
      runCli([...base, '--out', out('low'), '--cloud-thr', '0.1', '--shadow-thr', '0.1']),
      runCli([...base, '--out', out('high'), '--cloud-thr', '0.9', '--shadow-thr', '0.9']),
      runCli([...base, '--out', out('area'), '--cloud-thr', '0.1', '--shadow-thr', '0.1', '--min-area', '5000']),
    ]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const count = (m: Uint8Array): number => m.reduce((s, v) => s + v, 0);
    const [low, high, area] = await Promise.all([band(out('low')), band(out('high')), band(out('area'))]);
    expect(count(low)).toBeGreaterThan(count(high));
    expect(count(area)).not.toBe(count(low));
    expect(existsSync(out('low'))).toBe(true);
  });

  test('a baseline-04.00 SAFE: the offset is reported, and --harmonize changes what the models see', async () => {
    const safe = path.join(DATA, 's2-l2a-T01UBT-safe', 'S2B_MSIL2A_20230122T231849_N0400_R087_T01UBT_20230124T042703.SAFE');
    const plain = path.join(tmp, 'safe-plain');
    const harmonized = path.join(tmp, 'safe-harmonized');
    const runs = await Promise.all([
      runCli(['run', '--s2-raster', safe, '--product-mask', 'scl', '--out', path.join(plain, 'mask.tif'), '--probabilities', plain]),
      runCli(['run', '--s2-raster', safe, '--product-mask', 'scl', '--out', path.join(harmonized, 'mask.tif'), '--probabilities', harmonized, '--harmonize']),
    ]);
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(runs[0].stderr).toMatch(/warning: processing baseline 04\.00: .*--harmonize/);
    const prob = async (dir: string): Promise<Float32Array> => {
      const image = await (await fromFile(path.join(dir, 'cloud_probability.tif'))).getImage();
      return ((await image.readRasters({ interleave: false })) as unknown as Float32Array[])[0];
    };
    const [a, b] = await Promise.all([prob(plain), prob(harmonized)]);
    expect(a.length).toBe(100 * 100);
    expect(a.some((v, i) => v !== b[i])).toBe(true);
  });

  test('FarmVibes-class models run through the pipeline: a fixed 1x12x512x512 FPN cloud model, batch 1', async () => {
    // Random weights (benchmark models): the output means nothing, the shapes and the path do.
    const { cloud } = await ensureFpnModels();
    const dir = path.dirname(cloud);
    const out = path.join(tmp, 'fpn.tif');
    const r = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'none', '--out', out, '--models-dir', dir, '--cloud-model', FPN_FILES.cloud, '--shadow-model', FPN_FILES.shadow, '--json', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ chips: 9, width: 1098, height: 1098 });
    expect((await band(out)).length).toBe(1098 * 1098);
  }, 300_000);
});
