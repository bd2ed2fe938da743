/**
 * The options and paths an operator gets wrong: each refused before any work with one line
 * naming the option and the bound, nothing written, the inputs untouched.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fsReason } from '../shared/errors.ts';
import { resolveParams } from '../shared/params.ts';
import { runCli, SAMPLE } from './helpers/cli.ts';

let tmp: string;
let scene: string;
/** Root in a container that may mount a tmpfs: the only way to get a real full or read-only disk. */
function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(path.join(os.tmpdir(), 'icm-mount-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe]);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
const sha = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-harden-'));
  scene = path.join(tmp, 'scene');
  cpSync(SAMPLE, scene, { recursive: true });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** One line on stderr, the code and the pattern in it, a usage-class exit code. */
async function expectRefused(args: string[], code: string, message: RegExp): Promise<string> {
  const r = await runCli(args);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^improve-cloud-mask: error \\[${code}\\]: `));
  expect(lines[0]).toMatch(message);
  expect(r.code).not.toBe(0);
  return lines[0];
}

const run = (...args: string[]): string[] => ['run', '--s2-raster', scene, '--product-mask', 'scl', '--quiet', ...args];

describe('outputs are checked against the inputs and each other before any work', () => {
  test('--out on a band of the input folder is refused and the band is untouched', async () => {
    const band = path.join(scene, 'B04.tif');
    const before = sha(band);
    await expectRefused(run('--out', band), 'BAD_OPTION', /--out .*B04\.tif is the input --s2-raster/);
    expect(sha(band)).toBe(before);
  });

  test('--out through a symlink to the product mask is refused', async () => {
    const mask = path.join(tmp, 'product-mask.tif');
    writeFileSync(mask, 'a product mask');
    const link = path.join(tmp, 'link-to-mask.tif');
    symlinkSync(mask, link);
    await expectRefused(['run', '--s2-raster', scene, '--product-mask', mask, '--quiet', '--out', link], 'BAD_OPTION', /is the input --product-mask/);
    expect(readFileSync(mask, 'utf8')).toBe('a product mask');
  });

  test('--classes on the same path as --out is refused', async () => {
    const out = path.join(tmp, 'same', 'mask.tif');
    await expectRefused(run('--out', out, '--classes', path.join(tmp, 'same', '.', 'mask.tif')), 'BAD_OPTION', /--out and --classes both write/);
    expect(existsSync(path.join(tmp, 'same'))).toBe(false);
  });

  test('a batch whose output folder is the scenes\' folder may not overwrite a scene', async () => {
    const dir = path.join(tmp, 'stacked');
    mkdirSync(dir);
    const input = path.join(dir, 'a.tif');
    writeFileSync(input, 'stands for a stacked scene');
    const manifest = path.join(tmp, 'scenes.txt');
    writeFileSync(manifest, `${input} none\n`);
    await expectRefused(['batch', '--manifest', manifest, '--out-dir', dir, '--quiet'], 'BAD_OPTION', /scene a.*a\.tif is the input scene a/);
    expect(readFileSync(input, 'utf8')).toBe('stands for a stacked scene');
  });
});

describe('numbers that reach the machine\'s limits are refused with the bound named', () => {
  const out = (): string => path.join(tmp, `o-${Math.random().toString(36).slice(2)}.tif`);
  test('--threads 1000', async () => {
    await expectRefused(run('--out', out(), '--threads', '1000'), 'BAD_OPTION', new RegExp(`--threads 1000 is over the limit of ${4 * os.availableParallelism()} \\(4 x the ${os.availableParallelism()} cores`));
  });
  test('--chips-per-job 9 (no silent clamp to 8)', async () => {
    await expectRefused(run('--out', out(), '--chips-per-job', '9'), 'BAD_OPTION', /--chips-per-job 9 is over the limit of 8/);
  });
  test('--max-in-flight 100000 and --scenes-in-flight 100', async () => {
    await expectRefused(run('--out', out(), '--max-in-flight', '100000'), 'BAD_OPTION', /--max-in-flight 100000 is over the limit of 1024/);
    const manifest = path.join(tmp, 'one-scene.txt');
    writeFileSync(manifest, `${scene} scl\n`);
    await expectRefused(['batch', '--manifest', manifest, '--out-dir', path.join(tmp, 'never'), '--scenes-in-flight', '100', '--quiet'], 'BAD_OPTION', /--scenes-in-flight 100 is over the limit of 16/);
    expect(existsSync(path.join(tmp, 'never'))).toBe(false);
  });
});

describe('typos do not become values', () => {
  test("--cloud-thr '' and ' ' are refused, not read as 0 (a 100 % cloud mask)", async () => {
    for (const blank of ['', ' ']) {
      await expectRefused(run('--out', path.join(tmp, 'blank.tif'), '--cloud-thr', blank), 'BAD_OPTION', /parameter cloud_thr must be a number in \[0, 1\], got "\s*"/);
    }
    expect(() => resolveParams({ shadow_thr: '' })).toThrow(/shadow_thr/);
    expect(() => resolveParams({ min_area: ' ' })).toThrow(/min_area/);
    expect(resolveParams({ cloud_thr: '0.4' }).cloud_thr).toBe(0.4);
  });

  test('--cloud-thr -0.1 gets one line, not the parser\'s three', async () => {
    const r = await runCli(run('--out', path.join(tmp, 'neg.tif'), '--cloud-thr', '-0.1'));
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/--cloud-thr=-XYZ/);
  });

  test('malformed --params YAML: one line, no code frame', async () => {
    const f = path.join(tmp, 'bad.yaml');
    writeFileSync(f, 'cloud_thr: [0.3\nshadow_thr: 0.2\n');
    await expectRefused(run('--out', path.join(tmp, 'p.tif'), '--params', f), 'BAD_OPTION', /--params .*bad\.yaml: not YAML\/JSON/);
  });

  test('--nats-prefix a.b is a bad option, refused before connecting', async () => {
    await expectRefused(run('--out', path.join(tmp, 'n.tif'), '--nats', 'nats://127.0.0.1:1', '--nats-prefix', 'a.b'), 'BAD_OPTION', /--nats-prefix must match/);
  });
});

describe('failures leave nothing behind and say what happened in words', () => {
  test('a missing input leaves no empty output folders', async () => {
    const base = path.join(tmp, 'leftovers');
    mkdirSync(base);
    const args = ['run', '--s2-raster', path.join(tmp, 'nope'), '--product-mask', 'scl', '--quiet', '--out', path.join(base, 'sub', 'deeper', 'm.tif')];
    await expectRefused([...args, '--probabilities', path.join(base, 'probs'), '--quicklook', path.join(base, 'ql', 'q.png')], 'INPUT_NOT_FOUND', /nope/);
    expect(readdirSync(base)).toEqual([]);
  });

  test('an output folder blocked by a file: OUTPUT_FAILED in words, not raw EEXIST text', async () => {
    const file = path.join(tmp, 'a-file');
    writeFileSync(file, 'x');
    const line = await expectRefused(run('--out', path.join(file, 'm.tif')), 'OUTPUT_FAILED', /cannot create the output folder .*a-file: (a file is in the way|a part of the path is a file)/);
    expect(line).not.toMatch(/EEXIST: file already exists|ENOTDIR: not a directory/);
  });

  test.skipIf(!canMount())('a full disk and a read-only one: OUTPUT_FAILED named once, no temporary name, nothing left', async () => {
    const full = path.join(tmp, 'full');
    const ro = path.join(tmp, 'ro');
    mkdirSync(full);
    mkdirSync(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', full]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro]);
    try {
      const nospace = await expectRefused(run('--out', path.join(full, 'mask.tif'), '--probabilities', path.join(full, 'probs')), 'OUTPUT_FAILED', /no space left on the device \(ENOSPC\)/);
      expect(nospace).not.toMatch(/\.tmp-|ENOSPC ENOSPC|ENOSPC:/);
      expect(readdirSync(full)).toEqual([]);
      const readOnly = await expectRefused(run('--out', path.join(ro, 'mask.tif')), 'OUTPUT_FAILED', /cannot write GeoTIFF .*ro[/\\]mask\.tif: the file system is read-only \(EROFS\)/);
      expect(readOnly).not.toMatch(/\.tmp-|EROFS EROFS|EROFS:/);
    } finally {
      execFileSync('umount', [full]);
      execFileSync('umount', [ro]);
    }
  });

  test('file-system errors are named once, without the syscall', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    expect(fsReason(enospc)).toBe('no space left on the device (ENOSPC)');
    const erofs = Object.assign(new Error("EROFS: read-only file system, open '/x/m.tif.tmp-1-ab'"), { code: 'EROFS' });
    expect(fsReason(erofs)).toBe('the file system is read-only (EROFS)');
  });
});
