/**
 * Model evaluation: scores on the held-out block of the human-labelled ukis scene, agreement with
 * Sen2Cor's SCL on a real L2A tile, and two one-band threshold baselines for context.
 * Models run through worker/models.ts, exactly as the pipeline runs them.
 */
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, INPUT_BANDS, type ModelRole } from '../../shared/manifest.ts';
import { defaultModelsDir, loadModel, type LoadedModel, predictProbabilities } from '../../worker/models.ts';
import { type BinaryScores, confusion, PIPELINE_THRESHOLD, scores, threshold } from './metrics.ts';
import { loadSclScene, SCL_HELD_OUT_COL_START, sclHeldOutPixels, type SclScene } from './l2a-scene.ts';
import { heldOutPixels, loadUkisScene, sharedDataDir, SPLIT, targets, toFarmVibesDn, trainingPixels, type UkisScene } from './ukis-data.ts';

export interface EvalOptions {
  /** Directory holding the models. Default: the repository's models/. */
  modelsDir?: string;
  cloudModel?: string;
  shadowModel?: string;
  /** Directory holding labels-ukis-s2/ and s2-l2a-29RKH/. Default: ../shared/data. */
  dataDir?: string;
}

export interface RoleReport {
  role: ModelRole;
  model: string;
  threshold: number;
  /** Model vs human labels on the held-out block. */
  heldOut: BinaryScores;
  /** Model vs SCL on the L2A tile (20 m grid, valid pixels): the never-trained-on eastern part, and all of it. */
  scl: { east: BinaryScores; all: BinaryScores };
  /** Cloud only: share of SCL opaque-cloud (8, 9) and thin-cirrus (10) pixels the model calls cloud, eastern part. */
  sclRecallByClass?: { opaque: number; cirrus: number };
  baseline: { rule: string; heldOut: BinaryScores; scl: { east: BinaryScores; all: BinaryScores } };
}

export interface EvalReport {
  heldOutPixels: number;
  heldOutRows: string;
  sclValidPixels: number;
  sclEastPixels: number;
  sclGrid: string;
  cloud: RoleReport;
  shadow: RoleReport;
}

// ---------------------------------------------------------------------------------------------
// Baselines: one band statistic and one threshold, fitted on the training rows for balanced accuracy.

interface Baseline {
  rule: string;
  /** 1 where the rule fires, from the six reflectance planes (B02,B03,B04,B08,B11,B12). */
  apply(refl: readonly ArrayLike<number>[]): ArrayLike<number>;
}

function fitThreshold(stat: Float64Array, truth: Uint8Array, pixels: Int32Array, above: boolean): number {
  let best = 0;
  let bestScore = -1;
  for (let t = 0; t <= 1.0001; t += 0.005) {
    const pred = stat.map((v) => ((above ? v > t : v < t) ? 1 : 0));
    const s = scores(confusion(pred, truth, pixels)).balancedAccuracy;
    if (s > bestScore) {
      bestScore = s;
      best = Math.round(t * 1000) / 1000;
    }
  }
  return best;
}

const brightness = (r: readonly ArrayLike<number>[]) => Float64Array.from({ length: r[0]!.length }, (_, i) => (r[0]![i]! + r[1]![i]! + r[2]![i]!) / 3);
const nir = (r: readonly ArrayLike<number>[]) => Float64Array.from(r[3]!);

function fitBaselines(scene: UkisScene): Record<ModelRole, Baseline> {
  const train = trainingPixels(scene);
  const tb = fitThreshold(brightness(scene.reflectance), targets(scene, 'cloud'), train, true);
  const tn = fitThreshold(nir(scene.reflectance), targets(scene, 'shadow'), train, false);
  return {
    cloud: { rule: `mean(B02,B03,B04) > ${tb}`, apply: (r) => brightness(r).map((v) => (v > tb ? 1 : 0)) },
    shadow: { rule: `B08 < ${tn}`, apply: (r) => nir(r).map((v) => (v < tn ? 1 : 0)) },
  };
}

// ---------------------------------------------------------------------------------------------
// Running a model on any image size

function copyChip(src: Float32Array, h: number, w: number, y0: number, x0: number, th: number, tw: number): Float32Array {
  // Edge replication where the image is smaller than the chip.
  const out = new Float32Array(INPUT_BANDS * th * tw);
  for (let b = 0; b < INPUT_BANDS; b++) {
    for (let y = 0; y < th; y++) {
      const sy = Math.min(h - 1, y0 + y);
      for (let x = 0; x < tw; x++) out[(b * th + y) * tw + x] = src[(b * h + sy) * w + Math.min(w - 1, x0 + x)]!;
    }
  }
  return out;
}

function chipStarts(dim: number, size: number): number[] {
  if (dim <= size) return [0];
  const starts: number[] = [];
  for (let s = 0; s + size < dim; s += size) starts.push(s);
  starts.push(dim - size);
  return starts;
}

/** Probabilities for a [1,12,h,w] image; fixed-size or size-multiple models run chip by chip. */
async function predictImage(model: LoadedModel, dn: Float32Array, h: number, w: number): Promise<Float32Array> {
  const { fixedShape, sizeMultiple } = model.manifest.input;
  if (!fixedShape && h % sizeMultiple === 0 && w % sizeMultiple === 0) return predictProbabilities(model, dn, 1, h, w);
  const th = fixedShape ? fixedShape[2] : 512;
  const tw = fixedShape ? fixedShape[3] : 512;
  const out = new Float32Array(h * w);
  for (const y0 of chipStarts(h, th)) {
    for (const x0 of chipStarts(w, tw)) {
      const prob = await predictProbabilities(model, copyChip(dn, h, w, y0, x0, th, tw), 1, th, tw);
      for (let y = 0; y < Math.min(th, h - y0); y++) {
        for (let x = 0; x < Math.min(tw, w - x0); x++) out[(y0 + y) * w + x0 + x] = prob[y * tw + x]!;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

async function evaluateRole(
  role: ModelRole, name: string, modelsDir: string, ukis: UkisScene, l2a: SclScene, baseline: Baseline,
): Promise<RoleReport> {
  const thr = PIPELINE_THRESHOLD[role];
  const model = await loadModel(name, role, modelsDir);
  try {
    const heldOut = heldOutPixels(ukis);
    const truth = targets(ukis, role);
    const ukisPred = threshold(await predictImage(model, toFarmVibesDn(ukis), ukis.height, ukis.width), thr);
    const l2aPred = threshold(await predictImage(model, l2a.dn, l2a.height, l2a.width), thr);
    const sclTruth = role === 'cloud' ? l2a.sclCloud : l2a.sclShadow;
    const east = sclHeldOutPixels(l2a);
    const vsScl = (pred: ArrayLike<number>) => ({
      east: scores(confusion(pred, sclTruth, east)),
      all: scores(confusion(pred, sclTruth, l2a.valid)),
    });
    const report: RoleReport = {
      role, model: name, threshold: thr,
      heldOut: scores(confusion(ukisPred, truth, heldOut)),
      scl: vsScl(l2aPred),
      baseline: { rule: baseline.rule, heldOut: scores(confusion(baseline.apply(ukis.reflectance), truth, heldOut)), scl: vsScl(baseline.apply(l2a.reflectance)) },
    };
    if (role === 'cloud') {
      const classRecall = (classes: number[]) => scores(confusion(l2aPred, l2a.scl.map((c) => (classes.includes(c) ? 1 : 0)), east.filter((p) => classes.includes(l2a.scl[p]!)))).recall;
      report.sclRecallByClass = { opaque: classRecall([8, 9]), cirrus: classRecall([10]) };
    }
    return report;
  } finally {
    await model.session.release();
  }
}

export async function evaluateModels(opts: EvalOptions = {}): Promise<EvalReport> {
  const modelsDir = opts.modelsDir ?? defaultModelsDir();
  const dataDir = opts.dataDir ?? sharedDataDir();
  const ukis = await loadUkisScene(dataDir);
  const l2a = await loadSclScene(dataDir);
  const baselines = fitBaselines(ukis);
  return {
    heldOutPixels: heldOutPixels(ukis).length,
    heldOutRows: `${SPLIT.heldOutRowStart}-${SPLIT.heldOutRowEnd - 1}`,
    sclValidPixels: l2a.valid.length,
    sclEastPixels: sclHeldOutPixels(l2a).length,
    sclGrid: `${l2a.width}x${l2a.height}`,
    cloud: await evaluateRole('cloud', opts.cloudModel ?? DEFAULT_CLOUD_MODEL, modelsDir, ukis, l2a, baselines.cloud),
    shadow: await evaluateRole('shadow', opts.shadowModel ?? DEFAULT_SHADOW_MODEL, modelsDir, ukis, l2a, baselines.shadow),
  };
}

// ---------------------------------------------------------------------------------------------

const num = (v: number) => (Number.isNaN(v) ? '   -  ' : v.toFixed(4));
const pct = (v: number) => (Number.isNaN(v) ? '  -  ' : `${(100 * v).toFixed(1)}%`.padStart(6));

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
}

/** A plain-text table of the report, for the terminal and docs/models.md. */
export function formatEvalTable(r: EvalReport): string {
  const w1 = [7, 40, 8, 9, 9, 7, 7, 7];
  const lines = [
    `Held-out block of labels-ukis-s2 (rows ${r.heldOutRows}, ${r.heldOutPixels} px, human labels, L1C TOA); model prob > threshold`,
    row(['role', 'model', 'bal.acc', 'precision', 'recall', 'F1', 'IoU', 'pred%'], w1),
  ];
  for (const x of [r.cloud, r.shadow]) {
    for (const [name, s] of [[`${x.model} (> ${x.threshold})`, x.heldOut], [`baseline ${x.baseline.rule}`, x.baseline.heldOut]] as const) {
      lines.push(row([x.role, name, num(s.balancedAccuracy), num(s.precision), num(s.recall), num(s.f1), num(s.iou), pct(s.predictedFraction)], w1));
    }
  }
  lines.push('', `Agreement with Sen2Cor SCL on s2-l2a-29RKH (L2A, 20 m grid ${r.sclGrid}; SCL cloud = 8,9,10, shadow = 3)`,
    `east = columns ${SCL_HELD_OUT_COL_START}.. (${r.sclEastPixels} px, never trained on, holds the clouds); all = ${r.sclValidPixels} valid px (the cloud model saw 2k clear desert px of the west)`);
  const w2 = [7, 40, 5, 8, 9, 9, 7, 7, 7, 7];
  lines.push(row(['role', 'model', 'area', 'accuracy', 'precision', 'recall', 'F1', 'IoU', 'model%', 'SCL%'], w2));
  for (const x of [r.cloud, r.shadow]) {
    for (const [name, s] of [[x.model, x.scl], [`baseline ${x.baseline.rule}`, x.baseline.scl]] as const) {
      for (const area of ['east', 'all'] as const) {
        const v = s[area];
        lines.push(row([x.role, name, area, num(v.accuracy), num(v.precision), num(v.recall), num(v.f1), num(v.iou), pct(v.predictedFraction), pct(v.trueFraction)], w2));
      }
    }
  }
  const rc = r.cloud.sclRecallByClass;
  if (rc) {
    lines.push(`${r.cloud.model} finds ${pct(rc.opaque).trim()} of SCL opaque cloud (8, 9) and ${pct(rc.cirrus).trim()} of SCL thin cirrus (10) in the east; ` +
      'Sen2Cor finds cirrus with B10, which the 12-band input lacks.');
  }
  return lines.join('\n');
}
