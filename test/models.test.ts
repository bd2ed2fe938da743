/**
 * Models: manifest validation, every bad-model case failing at load with its one-line error,
 * the bundled models on a real Sentinel-2 chip, and the FPN-class benchmark model.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fromFile } from 'geotiff';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CloudMaskError } from '../shared/errors.ts';
import { BUILTIN_MANIFESTS, checkIoShapes, DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, type ModelManifest, validateManifest } from '../shared/manifest.ts';
import { BUNDLED_FILE, type BundledModel, loadTrainingData, trainBundled } from '../scripts/lib/bundled-models.ts';
import { bandPlanes, computeFeatures, forwardLogits, sigmoid } from '../scripts/lib/cheaplab.ts';
import { ensureFpnModels } from '../scripts/lib/fpn.ts';
import { PIPELINE_THRESHOLD } from '../scripts/lib/metrics.ts';
import { attr, encodeModel, GraphBuilder } from '../scripts/lib/onnx-writer.ts';
import { sharedDataDir } from '../scripts/lib/ukis-data.ts';
import { defaultModelsDir, inspectModel, loadModel, loadModelPair, predictPair, predictProbabilities, readManifest, releasePair, resolveModelPath } from '../worker/models.ts';
import { mergeModelPair, PairMergeError, SHARED_INPUT } from '../worker/onnx-pair.ts';

const MODELS = defaultModelsDir();
/** onnxruntime (float32) against the float64 re-implementation, in probability; as npm run train-models checks (measured about 1e-5). */
const TOLERANCE = 1e-4;

async function badModel(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(CloudMaskError);
  const e = err as CloudMaskError;
  expect(e.code).toBe('BAD_MODEL');
  expect(e.message).not.toContain('\n');
  expect(e.message).toMatch(pattern);
}

function tinyOnnx(channels: number, opset = 13): Uint8Array {
  const g = new GraphBuilder();
  const w = g.floatInit('w', [2, channels, 1, 1], new Float32Array(2 * channels).fill(0.1));
  g.op('Conv', ['input', w], { kernel_shape: attr.ints([1, 1]) }, 'logits');
  return encodeModel({ opset, graph: g.build('tiny', [{ name: 'input', dims: ['N', channels, 'H', 'W'] }], [{ name: 'logits', dims: ['N', 2, 'H', 'W'] }]) });
}

function cheapManifest(file: string): ModelManifest {
  return { ...structuredClone(BUILTIN_MANIFESTS['cloud_model3_cpu.onnx']!), file, provenance: 'test' };
}

/** A real 512x512 chip of the L2A tile's cloudy north-east, as a FarmVibes [1,12,512,512] DN input. */
async function realChip(): Promise<Float32Array> {
  const dir = path.join(sharedDataDir(), 's2-l2a-29RKH');
  const size = 512;
  const x0 = 1098 - size; // 10 m grid: rows 0..511, columns 586..1097
  const dn = new Float32Array(12 * size * size).fill(1);
  const bands: [string, number, number][] = [['B02', 1, 1], ['B03', 2, 1], ['B04', 3, 1], ['B08', 7, 1], ['B11', 10, 2], ['B12', 11, 2]];
  for (const [band, slot, factor] of bands) {
    const image = await (await fromFile(path.join(dir, `${band}.tif`))).getImage();
    const win = [x0 / factor, 0, (x0 + size) / factor, size / factor];
    const data = (await image.readRasters({ window: win }))[0] as unknown as ArrayLike<number>;
    const w = size / factor;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) dn[slot * size * size + y * size + x] = data[Math.floor(y / factor) * w + Math.floor(x / factor)]!;
    }
  }
  return dn;
}

function range(a: Float32Array): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const v of a) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  return { min, max };
}

describe('validateManifest', () => {
  const good = BUILTIN_MANIFESTS['shadow.onnx']!;

  it('accepts the built-in manifests and the shipped ones', async () => {
    for (const [name, m] of Object.entries(BUILTIN_MANIFESTS)) expect(validateManifest(m, name)).toEqual(m);
    for (const name of [DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL]) {
      const json = JSON.parse(await readFile(path.join(MODELS, `${name}.json`), 'utf8')) as ModelManifest;
      const m = validateManifest(json, name);
      expect(m.bandsUsed).toEqual([1, 2, 3, 7, 10, 11]);
      expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it.each([
    ['role', { role: 'rain' }],
    ['bandsUsed', { bandsUsed: [1, 12] }],
    ['bandsUsed', { bandsUsed: [] }],
    ['inputScale', { inputScale: 0 }],
    ['activation', { activation: 'softmax' }],
    ['outputChannels', { outputChannels: 2 }],
    ['outputChannels', { activation: 'probability', outputChannels: 2 }],
    ['input.fixedShape', { input: { fixedShape: [1, 3, 512, 512], sizeMultiple: 1, maxBatch: 1 } }],
    ['input.sizeMultiple', { input: { fixedShape: null, sizeMultiple: 0, maxBatch: null } }],
    ['input.maxBatch', { input: { fixedShape: null, sizeMultiple: 1, maxBatch: -1 } }],
    ['overlapPx', { overlapPx: 1.5 }],
    ['file', { file: '../shadow.onnx' }],
    ['sha256', { sha256: 'abc' }],
  ])('names the bad field: %s', (field, patch) => {
    expect(() => validateManifest({ ...good, ...patch }, 'm.json')).toThrow(`m.json: manifest.${field} must be`);
  });

  it("accepts activation 'probability' with one output channel", () => {
    expect(validateManifest({ ...good, activation: 'probability' }, 'm.json').activation).toBe('probability');
  });

  it('rejects a non-object', () => {
    expect(() => validateManifest([1], 'm.json')).toThrow(CloudMaskError);
  });
});

describe('checkIoShapes', () => {
  const cheap = BUILTIN_MANIFESTS['cloud_model3_cpu.onnx']!;
  const fpn = BUILTIN_MANIFESTS['cloud_model2_cpu.onnx']!;
  it('accepts matching shapes and unknown ones', () => {
    checkIoShapes(cheap, ['N', 12, 'H', 'W'], ['N', 2, 'H', 'W'], 'a.onnx');
    checkIoShapes(fpn, [1, 12, 512, 512], [1, 2, 512, 512], 'b.onnx');
    checkIoShapes(cheap, [], [], 'c.onnx');
  });
  it('rejects channel, size and output mismatches', () => {
    expect(() => checkIoShapes(cheap, ['N', 3, 'H', 'W'], ['N', 2, 'H', 'W'], 'a.onnx')).toThrow(/a\.onnx: input has 3 channels/);
    expect(() => checkIoShapes(cheap, [1, 12, 512, 512], ['N', 2, 'H', 'W'], 'a.onnx')).toThrow(/fixed size/);
    expect(() => checkIoShapes(fpn, [1, 12, 256, 256], [1, 2, 256, 256], 'b.onnx')).toThrow(/fixedShape/);
    expect(() => checkIoShapes(cheap, ['N', 12, 'H', 'W'], ['N', 1, 'H', 'W'], 'a.onnx')).toThrow(/output has 1 channels/);
  });
});

describe('loading with checks', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'icm-models-'));
    await writeFile(path.join(dir, 'shadow.onnx'), 'version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 52000000\n');
    await writeFile(path.join(dir, 'cloud_model3_cpu.onnx'), Buffer.from('this is not a protobuf at all \u0000\u00ff'.repeat(20)));
    await writeFile(path.join(dir, 'three.onnx'), tinyOnnx(3));
    await writeFile(path.join(dir, 'three.onnx.json'), JSON.stringify(cheapManifest('three.onnx')));
    await writeFile(path.join(dir, 'twelve.onnx'), tinyOnnx(12));
    await writeFile(path.join(dir, 'twelve.onnx.json'), JSON.stringify(cheapManifest('twelve.onnx')));
    await writeFile(path.join(dir, 'broken.onnx.json'), '{ not json');
    await copyFile(path.join(MODELS, DEFAULT_CLOUD_MODEL), path.join(dir, DEFAULT_CLOUD_MODEL));
    const m = JSON.parse(await readFile(path.join(MODELS, `${DEFAULT_CLOUD_MODEL}.json`), 'utf8')) as ModelManifest;
    await writeFile(path.join(dir, `${DEFAULT_CLOUD_MODEL}.json`), JSON.stringify({ ...m, sha256: '0'.repeat(64) }));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('refuses names that escape the models directory', async () => {
    for (const name of ['../x.onnx', '/etc/passwd', 'a/b.onnx', '..', '']) {
      expect(() => resolveModelPath(name, MODELS)).toThrow(/plain file name/);
    }
    await badModel(loadModel('../x.onnx', 'cloud', MODELS), /'\.\.\/x\.onnx' must be a plain file name.*--models-dir/);
  });

  it('missing file', async () => {
    await badModel(loadModel('cloud_model2_cpu.onnx', 'cloud', dir), /cloud_model2_cpu\.onnx not found in .*--models-dir/);
  });

  it('Git LFS pointer', async () => {
    await badModel(loadModel('shadow.onnx', 'shadow', dir), /shadow\.onnx is a Git LFS pointer.*git lfs pull/);
  });

  it('not an ONNX file', async () => {
    await badModel(loadModel('cloud_model3_cpu.onnx', 'cloud', dir), /cloud_model3_cpu\.onnx is not a loadable ONNX model/);
  });

  it('shapes that disagree with the manifest (3 input channels)', async () => {
    await badModel(loadModel('three.onnx', 'cloud', dir), /three\.onnx: input has 3 channels/);
    const ok = await loadModel('twelve.onnx', 'cloud', dir);
    await ok.session.release();
  });

  it('wrong role, unknown model, bad manifest JSON, sha256 mismatch', async () => {
    await badModel(loadModel(DEFAULT_CLOUD_MODEL, 'shadow', MODELS), /is a cloud model .* cannot be used as the shadow model/);
    await badModel(readManifest('nothing.onnx', dir), /no manifest for model nothing\.onnx/);
    await badModel(readManifest('broken.onnx', dir), /broken\.onnx\.json: not valid JSON/);
    await badModel(loadModel(DEFAULT_CLOUD_MODEL, 'cloud', dir), /sha256 .* do not belong together/);
  });
});

describe('bundled models on a real Sentinel-2 chip', () => {
  it('give probabilities in [0,1] and find the cloud in the north-east of 29RKH', async () => {
    const dn = await realChip();
    const cloud = await loadModel(DEFAULT_CLOUD_MODEL, 'cloud', MODELS);
    const shadow = await loadModel(DEFAULT_SHADOW_MODEL, 'shadow', MODELS);
    try {
      const pc = await predictProbabilities(cloud, dn, 1, 512, 512);
      const ps = await predictProbabilities(shadow, dn, 1, 512, 512);
      expect(pc.length).toBe(512 * 512);
      for (const p of [pc, ps]) {
        const { min, max } = range(p);
        expect(min).toBeGreaterThanOrEqual(0);
        expect(max).toBeLessThanOrEqual(1);
      }
      const cloudy = pc.reduce((n, v) => n + (v > 0.3 ? 1 : 0), 0) / pc.length;
      expect(cloudy).toBeGreaterThan(0.02);
      expect(cloudy).toBeLessThan(0.5);
      // A batch of two gives the same as one at a time.
      const two = new Float32Array(2 * dn.length);
      two.set(dn);
      two.set(dn, dn.length);
      const pb = await predictProbabilities(cloud, two, 2, 512, 512);
      expect(pb.subarray(512 * 512)).toEqual(pc);
    } finally {
      await cloud.session.release();
      await shadow.session.release();
    }
  });

  it('inspectModel returns the manifest', async () => {
    const m = await inspectModel(DEFAULT_SHADOW_MODEL, 'shadow', MODELS);
    // Raw DN, like the cloud model, so that a merged pair shares its input and features.
    expect(m.inputScale).toBe(1);
    expect(m.activation).toBe('probability');
    expect(m.overlapPx).toBe(1);
  });
});

describe('model pairs: both models in one session', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'icm-pairs-'));
    await writeFile(path.join(dir, 'c13.onnx'), tinyOnnx(12, 13));
    await writeFile(path.join(dir, 'c13.onnx.json'), JSON.stringify(cheapManifest('c13.onnx')));
    await writeFile(path.join(dir, 's14.onnx'), tinyOnnx(12, 14));
    await writeFile(path.join(dir, 's14.onnx.json'), JSON.stringify({ ...cheapManifest('s14.onnx'), role: 'shadow', inputScale: 1e-4, activation: 'softmax-channel-1' }));
    await writeFile(path.join(dir, 'lfs.onnx'), 'version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 52000000\n');
    await writeFile(path.join(dir, 'lfs.onnx.json'), JSON.stringify({ ...cheapManifest('lfs.onnx'), role: 'shadow' }));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the bundled models merge, and one run gives the bits of two separate sessions', async () => {
    const dn = await realChip();
    const pair = await loadModelPair(DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, MODELS);
    const cloud = await loadModel(DEFAULT_CLOUD_MODEL, 'cloud', MODELS);
    const shadow = await loadModel(DEFAULT_SHADOW_MODEL, 'shadow', MODELS);
    try {
      expect(pair.kind).toBe('merged');
      const both = await predictPair(pair, dn, 512, 512);
      expect(both.cloud).toEqual(await predictProbabilities(cloud, dn, 1, 512, 512));
      expect(both.shadow).toEqual(await predictProbabilities(shadow, dn, 1, 512, 512));
      expect(both.inferenceMs).toBeGreaterThan(0);
      expect([both.cloudMs, both.shadowMs]).toEqual([null, null]);
    } finally {
      await Promise.all([releasePair(pair), cloud.session.release(), shadow.session.release()]);
    }
  });

  it('models importing different operator sets run as two sessions, with the same results', async () => {
    const pair = await loadModelPair('c13.onnx', 's14.onnx', dir);
    const shadow = await loadModel('s14.onnx', 'shadow', dir);
    try {
      expect(pair.kind).toBe('separate');
      expect(pair.kind === 'separate' && pair.reason).toMatch(/different operator sets \(=13 vs =14\)/);
      const dn = new Float32Array(12 * 8 * 8).map((_, i) => 1000 + i);
      const both = await predictPair(pair, dn, 8, 8);
      expect(both.shadow).toEqual(await predictProbabilities(shadow, dn, 1, 8, 8));
      expect(both.cloudMs).toBeGreaterThan(0);
    } finally {
      await Promise.all([releasePair(pair), shadow.session.release()]);
    }
  });

  it('a broken model in a pair fails with its own BAD_MODEL error', async () => {
    await badModel(loadModelPair('c13.onnx', 'lfs.onnx', dir), /lfs\.onnx is a Git LFS pointer/);
    await badModel(loadModelPair(DEFAULT_CLOUD_MODEL, DEFAULT_CLOUD_MODEL, MODELS), /is a cloud model .* cannot be used as the shadow model/);
  });

  it('models that scale the DN alike share one input; others, or other input shapes, keep two', async () => {
    const inputs = async (bytes: Uint8Array): Promise<readonly string[]> => {
      const session = await ort.InferenceSession.create(bytes);
      const names = session.inputNames;
      await session.release();
      return names;
    };
    expect(await inputs(mergeModelPair(tinyOnnx(12), tinyOnnx(12), { shareInput: true }))).toEqual([SHARED_INPUT]);
    expect(await inputs(mergeModelPair(tinyOnnx(12), tinyOnnx(12)))).toEqual(['cloud/input', 'shadow/input']);
    expect(await inputs(mergeModelPair(tinyOnnx(12), tinyOnnx(3), { shareInput: true }))).toEqual(['cloud/input', 'shadow/input']);
    // c13 (raw DN) and a 1e-4 model: two inputs, each fed its own scaling (the FarmVibes pair case).
    const pair = await loadModelPair(DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, MODELS);
    try {
      expect(pair.kind === 'merged' && [pair.cloud.inputName, pair.shadow.inputName]).toEqual([SHARED_INPUT, SHARED_INPUT]);
    } finally {
      await releasePair(pair);
    }
  });

  it('mergeModelPair refuses what it cannot merge faithfully', () => {
    expect(() => mergeModelPair(tinyOnnx(12, 13), tinyOnnx(12, 14))).toThrow(PairMergeError);
    expect(() => mergeModelPair(tinyOnnx(12), Uint8Array.from([0x0a, 0xff]))).toThrow(/truncated|malformed/);
  });
});

describe('the shipped pair equals its reference', () => {
  // Trained once for the tests below (deterministic, about 10 s).
  let rebuilt: Record<'cloud' | 'shadow', BundledModel>;
  beforeAll(async () => {
    const data = await loadTrainingData();
    rebuilt = { cloud: trainBundled('cloud', data), shadow: trainBundled('shadow', data) };
  }, 180_000);

  it('the model files are what npm run train-models builds from the data (byte for byte)', async () => {
    for (const role of ['cloud', 'shadow'] as const) {
      const shipped = await readFile(path.join(MODELS, BUNDLED_FILE[role]));
      const { bytes } = rebuilt[role];
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(createHash('sha256').update(shipped).digest('hex'));
    }
  });

  it('the merged pair on a real chip gives the float64 re-implementation of the graph', async () => {
    const dn = await realChip();
    const size = 512;
    const pair = await loadModelPair(DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, MODELS);
    try {
      const both = await predictPair(pair, dn, size, size);
      const features = computeFeatures(bandPlanes(dn, size, size), size, size);
      const all = Int32Array.from({ length: size * size }, (_, i) => i);
      for (const role of ['cloud', 'shadow'] as const) {
        const reference = Array.from(forwardLogits(rebuilt[role].weights, features, all), sigmoid);
        const got = both[role];
        const thr = PIPELINE_THRESHOLD[role];
        let worst = 0;
        let positives = 0;
        let disagree = 0;
        for (let p = 0; p < all.length; p++) {
          worst = Math.max(worst, Math.abs(got[p]! - reference[p]!));
          // Float32 against float64 arithmetic (log included): the mask agrees wherever the reference is not that close to the threshold.
          if (Math.abs(reference[p]! - thr) > TOLERANCE && got[p]! > thr !== reference[p]! > thr) disagree++;
          if (got[p]! > thr) positives++;
        }
        expect(worst).toBeLessThan(TOLERANCE);
        expect(disagree).toBe(0);
        expect(positives).toBeGreaterThan(0);
      }
    } finally {
      await releasePair(pair);
    }
  });

  it('the merged pair computes the shared features once (onnxruntime profile)', async () => {
    const [c, s] = await Promise.all([readFile(path.join(MODELS, DEFAULT_CLOUD_MODEL)), readFile(path.join(MODELS, DEFAULT_SHADOW_MODEL))]);
    const dir = await mkdtemp(path.join(tmpdir(), 'icm-profile-'));
    try {
      const session = await ort.InferenceSession.create(mergeModelPair(c, s, { shareInput: true }), {
        graphOptimizationLevel: 'extended', enableProfiling: true, profileFilePrefix: path.join(dir, 'pair'),
      });
      await session.run({ [SHARED_INPUT]: new ort.Tensor('float32', new Float32Array(12 * 16 * 16).fill(1000), [1, 12, 16, 16]) });
      session.endProfiling();
      await session.release();
      const file = (await readdir(dir)).find((f) => f.endsWith('.json'))!;
      const events = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as { cat: string; name: string; args?: { op_name?: string } }[];
      const ops = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time')).map((e) => e.args?.op_name);
      const count = (op: string): number => ops.filter((o) => o === op).length;
      expect([count('Gather'), count('Add'), count('Log'), count('AveragePool')]).toEqual([1, 1, 1, 1]);
      // Each model keeps its own hidden and output layer.
      expect(ops.filter((o) => o === 'Conv' || o === 'FusedConv')).toHaveLength(4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('FPN-class benchmark model', () => {
  it('is generated, loads and runs on one 512 chip; refuses other sizes', { timeout: 180_000 }, async () => {
    const files = await ensureFpnModels();
    const dir = path.dirname(files.cloud);
    const model = await loadModel(path.basename(files.cloud), 'cloud', dir);
    try {
      expect(model.manifest.input.fixedShape).toEqual([1, 12, 512, 512]);
      expect(model.manifest.note).toMatch(/RANDOM WEIGHTS/);
      const p = await predictProbabilities(model, await realChip(), 1, 512, 512);
      const { min, max } = range(p);
      expect(min).toBeGreaterThanOrEqual(0);
      expect(max).toBeLessThanOrEqual(1);
      await badModel(predictProbabilities(model, new Float32Array(12 * 256 * 256).fill(1), 1, 256, 256), /only accepts 512x512/);
      // Two sessions, not one merged: with these, merging costs memory (see models.ts).
      const pair = await loadModelPair(path.basename(files.cloud), path.basename(files.shadow), dir);
      expect(pair.kind === 'separate' && pair.reason).toMatch(/CheapLab-class models only/);
      await releasePair(pair);
    } finally {
      await model.session.release();
    }
  });
});

describe('onnx writer', () => {
  it('is deterministic', () => {
    expect(tinyOnnx(12)).toEqual(tinyOnnx(12));
  });
});
