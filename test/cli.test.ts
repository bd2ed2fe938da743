/**
 * The CLI's other promises: describe (text and --json), --params files, --in-memory, --classes,
 * exit codes, --version, per-command help, usage errors, --overwrite, the summary's outputs,
 * --log-format json, evaluate --models-dir, and that --help/--version/describe load no heavy module.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { dilateReference } from '../coordinator/merge/reference.ts';
import { readGeoTiffMetadata } from '../raster/geotiff-writer.ts';
import { ensureFpnModels, FPN_FILES } from '../scripts/lib/fpn.ts';
import { COMMANDS, optionsFor } from '../cli/main.ts';
import { ERROR_TABLE } from '../shared/errors.ts';
import { PARAMETERS } from '../shared/params.ts';
import { DATA, loadRecorder, REPO, runCli, SAMPLE } from './helpers/cli.ts';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'icm-cli-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function band(file: string): Promise<Uint8Array> {
  const image = await (await fromFile(file)).getImage();
  return ((await image.readRasters({ interleave: false })) as unknown as Uint8Array[])[0];
}

const COMMAND_NAMES = Object.keys(COMMANDS) as (keyof typeof COMMANDS)[];

describe('CLI conventions', () => {
  test('--version prints the package version', async () => {
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    const { version } = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    expect(r.stdout.trim()).toBe(`improve-cloud-mask ${version}`);
  });

  test('--help lists every command and every exit code of the error table', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    for (const c of COMMAND_NAMES) expect(r.stdout).toMatch(new RegExp(`^  ${c}\\s`, 'm'));
    const codes = r.stdout.slice(r.stdout.indexOf('Exit codes:'));
    for (const [code, { exitCode }] of Object.entries(ERROR_TABLE)) expect(codes).toMatch(new RegExp(`^  ${exitCode}\\s.*\\b${code}\\b`, 'm'));
    expect(codes).toMatch(/^  0\s+success/m);
    // The README's table says the same.
    const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
    for (const [code, { exitCode }] of Object.entries(ERROR_TABLE)) expect(readme).toMatch(new RegExp(`^\\| ${exitCode} \\| [^|]*\`${code}\``, 'm'));
  });

  test('each command has its own help, naming every option it accepts', async () => {
    const helps = await Promise.all(COMMAND_NAMES.map((c) => runCli([c, '--help'])));
    helps.forEach((r, i) => {
      const command = COMMAND_NAMES[i];
      expect(r.code, command).toBe(0);
      expect(r.stdout).toContain(`Usage: improve-cloud-mask ${command}`);
      for (const option of Object.keys(optionsFor(command))) expect(r.stdout, `${command} --help names --${option}`).toContain(`--${option}`);
    });
    expect(new Set(helps.map((r) => r.stdout)).size).toBe(COMMAND_NAMES.length);
    // `help run` is `run --help`.
    expect((await runCli(['help', 'run'])).stdout).toBe(helps[0].stdout);
  });

  test('usage errors go to stderr with exit 2: unknown command, unknown option, an option of another command, a missing option, no command', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['run', '--no-such-flag'], /no-such-flag.*run --help/],
      [['worker', '--manifest', 'x.txt'], /manifest.*worker --help/],
      [['run', '--s2-raster', SAMPLE, '--product-mask', 'scl'], /run needs --out/],
      [['batch', '--out-dir', tmp], /batch needs exactly one of --manifest/],
      [[], /Usage: improve-cloud-mask COMMAND/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    results.forEach((r, i) => {
      expect(r.code, cases[i][0].join(' ')).toBe(2);
      expect(r.stdout, cases[i][0].join(' ')).toBe('');
      expect(r.stderr).toMatch(cases[i][1]);
    });
  });

  test('describe --json: sources, sinks and every parameter with its type and default', async () => {
    const r = await runCli(['describe', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { sources: Record<string, string>; sinks: Record<string, string>; parameters: Record<string, { type: string; default: unknown; description: string }> };
    expect(Object.keys(doc.sources)).toEqual(['s2_raster', 'product_mask']);
    expect(Object.keys(doc.sinks)).toEqual(['mask']);
    expect(Object.keys(doc.parameters)).toEqual(Object.keys(PARAMETERS));
    expect(doc.parameters.cloud_thr).toMatchObject({ type: 'number', default: 0.3 });
    expect(doc.parameters.shadow_thr).toMatchObject({ type: 'number', default: 0.2 });
    expect(doc.parameters.in_memory).toMatchObject({ type: 'boolean', default: false });
    expect(doc.parameters.min_area).toMatchObject({ type: 'integer', default: 0 });
    for (const p of Object.values(doc.parameters)) {
      expect(typeof p.description).toBe('string');
      // Each default is of its declared type.
      expect(p.type === 'integer' ? 'number' : p.type).toBe(typeof p.default);
    }
  });

  test('--help, --version, describe and run --help load neither onnxruntime, NATS, geotiff nor piscina; run does', async () => {
    const heavy = /\/node_modules\/(onnxruntime-node|nats|@nats-io|geotiff|piscina)\//;
    const light = [['--help'], ['--version'], ['describe'], ['describe', '--json'], ['run', '--help']];
    for (const [i, args] of light.entries()) {
      const rec = loadRecorder(path.join(tmp, `loads-${i}`));
      const r = await runCli(args, { nodeArgs: rec.nodeArgs, env: rec.env });
      expect(r.code, args.join(' ')).toBe(0);
      const loaded = rec.loaded();
      // The recorder works: it saw the CLI's own modules.
      expect(loaded.some((u) => u.includes('/cli/main.')), args.join(' ')).toBe(true);
      expect(loaded.filter((u) => heavy.test(u)), args.join(' ')).toEqual([]);
    }
    // The control: a real command loads them (it fails on the missing input, after loading).
    const rec = loadRecorder(path.join(tmp, 'loads-run'));
    const r = await runCli(['run', '--s2-raster', path.join(tmp, 'missing.tif'), '--product-mask', 'none', '--out', path.join(tmp, 'never.tif')], { nodeArgs: rec.nodeArgs, env: rec.env });
    expect(r.code).toBe(3);
    expect(rec.loaded().some((u) => /\/node_modules\/onnxruntime-node\//.test(u))).toBe(true);
  });

  test('evaluate honours --models-dir', async () => {
    const empty = path.join(tmp, 'no-models');
    mkdirSync(empty, { recursive: true });
    const r = await runCli(['evaluate', '--models-dir', empty]);
    expect(r.code).toBe(ERROR_TABLE.BAD_MODEL.exitCode);
    expect(r.stderr).toContain(empty);
  });

  test('an existing output is replaced only with --overwrite, refused before any work otherwise; the summary lists every output', async () => {
    const dir = path.join(tmp, 'overwrite');
    mkdirSync(dir, { recursive: true });
    const out = path.join(dir, 'mask.tif');
    const classes = path.join(dir, 'classes.tif');
    const probs = path.join(dir, 'probs');
    const quicklook = path.join(dir, 'ql.png');
    writeFileSync(out, 'an older mask');
    const args = ['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', out, '--classes', classes, '--probabilities', probs, '--quicklook', quicklook, '--quiet', '--threads', '1'];
    const refused = await runCli(args);
    expect(refused.code).toBe(ERROR_TABLE.OUTPUT_FAILED.exitCode);
    expect(refused.stderr).toMatch(/mask\.tif \(--out\) already exists; pass --overwrite/);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(readFileSync(out, 'utf8')).toBe('an older mask');
    for (const f of [classes, probs, quicklook]) expect(existsSync(f), `${f} not created`).toBe(false);

    const done = await runCli([...args, '--overwrite']);
    expect(done.code, done.stderr).toBe(0);
    const written = [out, classes, path.join(probs, 'cloud_probability.tif'), path.join(probs, 'shadow_probability.tif'), quicklook];
    for (const f of written) {
      expect(statSync(f).size, f).toBeGreaterThan(100);
      expect(done.stderr, `the summary names ${f}`).toContain(f);
    }
    expect((await band(out)).length).toBe(1098 * 1098);
    // Now every output exists: each one is named.
    const again = await runCli(args);
    expect(again.code).toBe(ERROR_TABLE.OUTPUT_FAILED.exitCode);
    for (const opt of ['out', 'classes', 'probabilities', 'quicklook']) expect(again.stderr).toContain(`(--${opt})`);
  });

  test('--log-format json: every stderr line is one JSON object (log, progress, summary; errors too)', async () => {
    const out = path.join(tmp, 'json-log', 'mask.tif');
    const r = await runCli(['run', '--s2-raster', SAMPLE, '--product-mask', 'scl', '--out', out, '--classes', path.join(tmp, 'json-log', 'classes.tif'), '--threads', '1', '--log-format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const records = r.stderr.trim().split('\n').map((line) => JSON.parse(line) as { time: string; level: string; type: string; [k: string]: unknown });
    for (const rec of records) {
      expect(Number.isNaN(Date.parse(rec.time))).toBe(false);
      expect(['info', 'warn', 'error']).toContain(rec.level);
    }
    const progress = records.filter((x) => x.type === 'progress');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress[progress.length - 1]).toMatchObject({ done: 9, total: 9, percent: 100 });
    const summary = records.filter((x) => x.type === 'summary');
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({ chips: 9, width: 1098, height: 1098, outputs: [out, path.join(tmp, 'json-log', 'mask.json'), path.join(tmp, 'json-log', 'classes.tif'), path.join(tmp, 'json-log', 'classes.tif.aux.xml')] });

    const failed = await runCli(['run', '--s2-raster', path.join(tmp, 'missing.tif'), '--product-mask', 'none', '--out', path.join(tmp, 'x.tif'), '--log-format', 'json']);
    expect(failed.code).toBe(3);
    expect(JSON.parse(failed.stderr.trim())).toMatchObject({ level: 'error', type: 'error', code: 'INPUT_NOT_FOUND', exit: 3 });
    const bad = await runCli(['describe', '--log-format', 'xml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--log-format must be text or json/);
  });
});

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
    // The mask (dilated chip row by chip row while the chips ran) is the whole-scene reference
    // dilation of what the classes say was flagged before the merge (cloud, shadow, product mask, nodata).
    const flagged = cls.map((v) => (v >= 1 && v <= 4 ? 1 : 0));
    expect(Buffer.from(a).equals(Buffer.from(dilateReference(flagged, 1098, 1098, 5)))).toBe(true);
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
