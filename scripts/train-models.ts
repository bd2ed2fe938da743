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
import type { ModelManifest, ModelRole } from '../shared/manifest.ts';
import { defaultModelsDir, loadModel, predictProbabilities } from '../worker/models.ts';
import { BUNDLED_FILE, loadTrainingData, provenance, trainBundled, type TrainingData } from './lib/bundled-models.ts';
import { BAND_SLOTS, forwardLogits, HIDDEN, LOG_OFFSET, POOL_RADIUS, sigmoid } from './lib/cheaplab.ts';
import { confusion, PIPELINE_THRESHOLD, rounded, scores, threshold } from './lib/metrics.ts';
import { DEFAULT_TRAIN_OPTIONS } from './lib/train-mlp.ts';
import { heldOutPixels, SPLIT, targets, toFarmVibesDn, trainingPixels, type UkisScene } from './lib/ukis-data.ts';

/** Both models take raw DN, so a merged pair feeds them one tensor and shares their feature nodes. */
const INPUT_SCALE = 1;
const FILE = BUNDLED_FILE;
const MAX_ABS_DIFF = 1e-4;

async function ortProbabilities(bytes: Uint8Array, scene: UkisScene): Promise<Float32Array> {
  const { width, height } = scene;
  const input = toFarmVibesDn(scene);
  const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
  try {
    const out = await session.run({ input: new ort.Tensor('float32', input, [1, 12, height, width]) });
    return out.probability!.data as Float32Array;
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
    inputScale: INPUT_SCALE,
    activation: 'probability',
    outputChannels: 1,
    input: { fixedShape: null, sizeMultiple: 1, maxBatch: null },
    overlapPx: POOL_RADIUS,
    provenance: provenance(role),
    metrics,
    sha256,
    note: `Reads only bands 1,2,3,7,10,11 (B02,B03,B04,B08,B11,B12) of the 12-band input; the other slots are ignored. ` +
      `Features: the ${k}x${k} mean of log(DN + ${LOG_OFFSET}) of the six bands (receptive field ${k}x${k}, ${POOL_RADIUS} px margin), ` +
      `one hidden layer of ${HIDDEN} ReLU units. Input raw DN (also for the shadow model, unlike FarmVibes' shadow.onnx, ` +
      'so that a merged pair computes the features once); ' +
      'output 1 channel, the probability (the graph ends in a Sigmoid). ' +
      `Calibrated so prob > ${PIPELINE_THRESHOLD[role]} is the class-balanced decision; not a calibrated posterior. ` +
      'Trained on L1C TOA reflectance of one scene: see docs/models.md for caveats.',
  };
}

async function trainOne(role: ModelRole, data: TrainingData, modelsDir: string): Promise<void> {
  const started = Date.now();
  const { scene, features } = data;
  const target = targets(scene, role);
  const train = trainingPixels(scene);
  const heldOut = heldOutPixels(scene);
  const { weights: shipped, bytes, lossPerEpoch, extra } = trainBundled(role, data);
  const thr = PIPELINE_THRESHOLD[role];

  const probs = await ortProbabilities(bytes, scene);
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

async function main(): Promise<void> {
  const started = Date.now();
  const modelsDir = defaultModelsDir();
  const data = await loadTrainingData();
  await trainOne('cloud', data, modelsDir);
  await trainOne('shadow', data, modelsDir);
  console.log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s; wrote to ${modelsDir}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
