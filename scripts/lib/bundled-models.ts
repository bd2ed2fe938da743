/**
 * How the bundled models are made from their data, in one place: `npm run train-models` writes
 * what this gives, and the tests rebuild it to check that the shipped files are exactly that.
 * Deterministic: the same data give the same bytes.
 */
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, type ModelRole } from '../../shared/manifest.ts';
import { bandPlanes, buildCheapLabOnnx, type CheapLabWeights, computeFeatures } from './cheaplab.ts';
import { hardNegativePixels, loadSclScene } from './l2a-scene.ts';
import { PIPELINE_THRESHOLD } from './metrics.ts';
import { DEFAULT_TRAIN_OPTIONS, trainCheapLab, type TrainingSource } from './train-mlp.ts';
import { loadUkisScene, sharedDataDir, targets, toFarmVibesDn, trainingPixels, type UkisScene } from './ukis-data.ts';

export const BUNDLED_FILE: Record<ModelRole, string> = { cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL };

export function provenance(role: ModelRole): string {
  return 'trained by scripts/train-models.ts (npm run train-models) on ../shared/data/labels-ukis-s2 ' +
    '(dlr-eoc/ukis-csmask test files, Apache-2.0; human cloud/shadow labels on a Sentinel-2 L1C scene)' +
    (role === 'cloud' ? ' plus clear desert pixels of ../shared/data/s2-l2a-29RKH (rio-tiler-pds fixtures, BSD-3-Clause)' : '') +
    '; contains modified Copernicus Sentinel data';
}

/** Training data beyond the ukis rows: for the cloud model, bright desert from the L2A tile as clear. */
export interface Extra {
  source: TrainingSource;
  description: string;
}

export interface TrainingData {
  scene: UkisScene;
  /** Feature planes of the ukis scene, from exactly the DN the graph reads. */
  features: Float64Array[];
  desert: Extra;
}

export async function loadTrainingData(dataDir = sharedDataDir()): Promise<TrainingData> {
  const scene = await loadUkisScene(dataDir);
  const features = computeFeatures(bandPlanes(toFarmVibesDn(scene), scene.width, scene.height), scene.width, scene.height);
  const l2a = await loadSclScene(dataDir);
  const desert: Extra = {
    source: {
      features: computeFeatures(bandPlanes(l2a.dn, l2a.width, l2a.height), l2a.width, l2a.height),
      target: new Uint8Array(l2a.width * l2a.height),
      pixels: hardNegativePixels(l2a),
    },
    description: 'clear bright desert, every 8th pixel of columns 0-259, rows 60-548 of s2-l2a-29RKH on its 20 m grid (SCL: no cloud there)',
  };
  return { scene, features, desert };
}

/**
 * Class-weighted training puts the balanced decision boundary at sigmoid(z) = 0.5; shifting the
 * logit by logit(thr) moves it to the pipeline's threshold. Then every weight is rounded to
 * float32, so the float64 forward pass uses exactly the numbers the graph holds.
 */
export function shipWeights(w: CheapLabWeights, thr: number): CheapLabWeights {
  const f32 = (a: Float64Array) => a.map((v) => Math.fround(v));
  return { w1: f32(w.w1), b1: f32(w.b1), w2: f32(w.w2), b2: Math.fround(w.b2 + Math.log(thr / (1 - thr))) };
}

export interface BundledModel {
  role: ModelRole;
  /** The weights as the graph holds them. */
  weights: CheapLabWeights;
  bytes: Uint8Array;
  lossPerEpoch: number[];
  extra: Extra | null;
}

/** Trains one bundled model and builds its ONNX file. */
export function trainBundled(role: ModelRole, data: TrainingData): BundledModel {
  const extra = role === 'cloud' ? data.desert : null;
  const sources = [{ features: data.features, target: targets(data.scene, role), pixels: trainingPixels(data.scene) }, ...(extra ? [extra.source] : [])];
  const { weights, lossPerEpoch } = trainCheapLab(sources, DEFAULT_TRAIN_OPTIONS);
  const shipped = shipWeights(weights, PIPELINE_THRESHOLD[role]);
  const doc = `improve-cloud-mask ${role} model (CheapLab class), ${provenance(role)}.`;
  return { role, weights: shipped, bytes: buildCheapLabOnnx(shipped, role, doc), lossPerEpoch, extra };
}
