/**
 * `npm run train-models`: trains the bundled cloud and shadow models on the ukis labels and
 * writes models/icm-{cloud,shadow}-cheaplab.onnx plus their manifests.
 *
 * Deterministic: a rerun gives byte-identical files. After writing, each model is run through
 * onnxruntime and must reproduce the training code's probabilities; the script fails otherwise.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, type ModelManifest, type ModelRole } from '../shared/manifest.ts';
import { defaultModelsDir, loadModel, predictProbabilities } from '../worker/models.ts';
import { BAND_SLOTS, buildCheapLabOnnx, type CheapLabWeights, computeFeatures, forwardLogits, HIDDEN, POOL_RADIUS, sigmoid } from './lib/cheaplab.ts';
import { confusion, PIPELINE_THRESHOLD, rounded, scores, threshold } from './lib/metrics.ts';
import { hardNegativePixels, loadSclScene, type SclScene } from './lib/l2a-scene.ts';
import { DEFAULT_TRAIN_OPTIONS, trainCheapLab, type TrainingSource } from './lib/train-mlp.ts';
import { heldOutPixels, loadUkisScene, sharedDataDir, SPLIT, targets, toFarmVibesDn, trainingPixels, type UkisScene } from './lib/ukis-data.ts';

const INPUT_SCALE: Record<ModelRole, number> = { cloud: 1, shadow: 1e-4 };
const FILE: Record<ModelRole, string> = { cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL };
const MAX_ABS_DIFF = 1e-4;

function provenance(role: ModelRole): string {
  return 'trained by scripts/train-models.ts (npm run train-models) on ../shared/data/labels-ukis-s2 ' +
    '(dlr-eoc/ukis-csmask test files, Apache-2.0; human cloud/shadow labels on a Sentinel-2 L1C scene)' +
    (role === 'cloud' ? ' plus clear desert pixels of ../shared/data/s2-l2a-29RKH (rio-tiler-pds fixtures, BSD-3-Clause)' : '') +
    '; contains modified Copernicus Sentinel data';
}

/**
 * Class-weighted training puts the balanced decision boundary at sigmoid(z) = 0.5; shifting the
 * logit by logit(thr) moves it to the pipeline's threshold. Then every weight is rounded to
 * float32, so the float64 forward pass uses exactly the numbers the graph holds.
 */
function shipWeights(w: CheapLabWeights, thr: number): CheapLabWeights {
  const f32 = (a: Float64Array) => a.map((v) => Math.fround(v));
  return { w1: f32(w.w1), b1: f32(w.b1), w2: f32(w.w2), b2: Math.fround(w.b2 + Math.log(thr / (1 - thr))) };
}

async function ortProbabilities(bytes: Uint8Array, role: ModelRole, scene: UkisScene): Promise<Float32Array> {
  const { width, height } = scene;
  const dn = toFarmVibesDn(scene);
  const input = role === 'cloud' ? dn : dn.map((v) => v * INPUT_SCALE.shadow);
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
  try {
    const out = await session.run({ input: new ort.Tensor('float32', input, [1, 12, height, width]) });
    const logits = out.logits!.data as Float32Array;
    const plane = width * height;
    const probs = new Float32Array(plane);
    for (let p = 0; p < plane; p++) {
      probs[p] = role === 'cloud' ? 1 / (1 + Math.exp(logits[p]! - logits[plane + p]!)) : sigmoid(logits[p]!);
    }
    return probs;
  } finally {
    await session.release();
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, pixels: ArrayLike<number>, bIndexed = false): number {
  let worst = 0;
  for (let k = 0; k < pixels.length; k++) {
    const p = pixels[k]!;
    worst = Math.max(worst, Math.abs(a[p]! - (bIndexed ? b[k]! : b[p]!)));
  }
  return worst;
}

function manifestFor(role: ModelRole, sha256: string, metrics: Record<string, unknown>): ModelManifest {
  const k = 2 * POOL_RADIUS + 1;
  return {
    file: FILE[role],
    role,
    architecture: 'cheaplab',
    bandsUsed: [...BAND_SLOTS],
    inputScale: INPUT_SCALE[role],
    activation: role === 'cloud' ? 'softmax-channel-1' : 'sigmoid',
    outputChannels: role === 'cloud' ? 2 : 1,
    input: { fixedShape: null, sizeMultiple: 1, maxBatch: null },
    overlapPx: POOL_RADIUS,
    provenance: provenance(role),
    metrics,
    sha256,
    note: `Reads only bands 1,2,3,7,10,11 (B02,B03,B04,B08,B11,B12) of the 12-band input; the other slots are ignored. ` +
      `Features: 6 reflectances + 15 normalized differences + their ${k}x${k} mean (receptive field ${k}x${k}, ` +
      `${POOL_RADIUS} px margin), one hidden layer of ${HIDDEN} ReLU units. ` +
      `${role === 'cloud' ? 'Input raw DN; output 2 logits, probability = softmax channel 1.' : 'Input DN x 1e-4; output 1 logit, probability = sigmoid.'} ` +
      `Calibrated so prob > ${PIPELINE_THRESHOLD[role]} is the class-balanced decision; not a calibrated posterior. ` +
      'Trained on L1C TOA reflectance of one scene: see docs/models.md for caveats.',
  };
}

/** Training data beyond the ukis rows: for the cloud model, bright desert from the L2A tile as clear. */
interface Extra {
  source: TrainingSource;
  description: string;
}

async function trainOne(role: ModelRole, scene: UkisScene, features: Float64Array[], extra: Extra | null, modelsDir: string): Promise<void> {
  const started = Date.now();
  const target = targets(scene, role);
  const train = trainingPixels(scene);
  const heldOut = heldOutPixels(scene);
  const sources = [{ features, target, pixels: train }, ...(extra ? [extra.source] : [])];
  const { weights, lossPerEpoch } = trainCheapLab(sources, DEFAULT_TRAIN_OPTIONS);
  const thr = PIPELINE_THRESHOLD[role];
  const shipped = shipWeights(weights, thr);
  const doc = `improve-cloud-mask ${role} model (CheapLab class), ${provenance(role)}.`;
  const bytes = buildCheapLabOnnx(shipped, role, doc);

  const probs = await ortProbabilities(bytes, role, scene);
  const reference = Array.from(forwardLogits(shipped, features, heldOut), sigmoid);
  const diff = maxAbsDiff(probs, reference, heldOut, true);
  if (!(diff < MAX_ABS_DIFF)) {
    throw new Error(`${FILE[role]}: onnxruntime and the training forward pass disagree by ${diff} (limit ${MAX_ABS_DIFF})`);
  }
  const predicted = threshold(probs, thr);
  const metrics = {
    threshold: thr,
    heldOut: rounded(scores(confusion(predicted, target, heldOut))),
    train: rounded(scores(confusion(predicted, target, train))),
    split: `held out rows ${SPLIT.heldOutRowStart}-${SPLIT.heldOutRowEnd - 1} (all columns) of the 512x384 ukis scene; trained on rows 0-${SPLIT.trainRowsEnd - 1}`,
    training: {
      ...DEFAULT_TRAIN_OPTIONS,
      ukisPixels: train.length,
      extraNegatives: extra ? `${extra.source.pixels.length} px: ${extra.description}` : 'none',
      finalLoss: Math.round(lossPerEpoch.at(-1)! * 1e6) / 1e6,
    },
  };
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const file = path.join(modelsDir, FILE[role]);
  await writeFile(file, bytes);
  await writeFile(`${file}.json`, `${JSON.stringify(manifestFor(role, sha256, metrics), null, 2)}\n`);

  // The shipped path: loader checks (manifest, sha256, shapes) and the worker's own scaling.
  const loaded = await loadModel(FILE[role], role, modelsDir);
  try {
    const viaWorker = await predictProbabilities(loaded, toFarmVibesDn(scene), 1, scene.height, scene.width);
    const d2 = maxAbsDiff(probs, viaWorker, heldOut);
    if (!(d2 < MAX_ABS_DIFF)) throw new Error(`${FILE[role]}: worker/models.ts gives different probabilities (max diff ${d2})`);
  } finally {
    await loaded.session.release();
  }
  const h = metrics.heldOut;
  console.log(`${role}: ${FILE[role]} ${bytes.length} B sha256 ${sha256.slice(0, 16)}... in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`  loss per epoch ${lossPerEpoch.map((l) => l.toFixed(4)).join(' ')}`);
  console.log(`  onnxruntime vs training forward: max |diff| ${diff.toExponential(2)}`);
  console.log(`  held out @ prob > ${thr}: balanced acc ${h.balancedAccuracy}, precision ${h.precision}, recall ${h.recall}, F1 ${h.f1}, IoU ${h.iou}`);
}

function desertNegatives(l2a: SclScene): Extra {
  return {
    source: {
      features: computeFeatures(l2a.reflectance, l2a.width, l2a.height),
      target: new Uint8Array(l2a.width * l2a.height),
      pixels: hardNegativePixels(l2a),
    },
    description: 'clear bright desert, every 8th pixel of columns 0-259, rows 60-548 of s2-l2a-29RKH on its 20 m grid (SCL: no cloud there)',
  };
}

async function main(): Promise<void> {
  const started = Date.now();
  const modelsDir = defaultModelsDir();
  const scene = await loadUkisScene();
  const features = computeFeatures(scene.reflectance, scene.width, scene.height);
  const l2a = await loadSclScene(sharedDataDir());
  await trainOne('cloud', scene, features, desertNegatives(l2a), modelsDir);
  await trainOne('shadow', scene, features, null, modelsDir);
  console.log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s; wrote to ${modelsDir}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
