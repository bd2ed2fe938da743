/** Binary classification scores shared by training (manifest metrics) and evaluation. */
import { DEFAULT_PARAMS } from '../../shared/params.ts';

/** FarmVibes' default thresholds: the pipeline calls a pixel cloud when prob > 0.3, shadow when > 0.2. */
export const PIPELINE_THRESHOLD = { cloud: DEFAULT_PARAMS.cloud_thr, shadow: DEFAULT_PARAMS.shadow_thr } as const;

export interface Confusion {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

export interface BinaryScores {
  balancedAccuracy: number;
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  iou: number;
  /** Fraction of scored pixels predicted positive / truly positive. */
  predictedFraction: number;
  trueFraction: number;
  pixels: number;
}

/** Counts predicted (`pred[i]`) vs true (`truth[i]`) over the given pixel indices (all when omitted). */
export function confusion(pred: ArrayLike<number>, truth: ArrayLike<number>, pixels?: ArrayLike<number>): Confusion {
  const c: Confusion = { tp: 0, fp: 0, tn: 0, fn: 0 };
  const n = pixels ? pixels.length : truth.length;
  for (let k = 0; k < n; k++) {
    const i = pixels ? pixels[k]! : k;
    const p = pred[i] !== 0;
    const t = truth[i] !== 0;
    if (p && t) c.tp++;
    else if (p) c.fp++;
    else if (t) c.fn++;
    else c.tn++;
  }
  return c;
}

/** 0/0 reads as NaN: the score is undefined (e.g. IoU when neither side has a positive pixel). */
function ratio(a: number, b: number): number {
  return b === 0 ? Number.NaN : a / b;
}

export function scores(c: Confusion): BinaryScores {
  const n = c.tp + c.fp + c.tn + c.fn;
  const recall = ratio(c.tp, c.tp + c.fn);
  const specificity = ratio(c.tn, c.tn + c.fp);
  return {
    balancedAccuracy: 0.5 * (recall + specificity),
    accuracy: ratio(c.tp + c.tn, n),
    precision: ratio(c.tp, c.tp + c.fp),
    recall,
    f1: ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
    iou: ratio(c.tp, c.tp + c.fp + c.fn),
    predictedFraction: ratio(c.tp + c.fp, n),
    trueFraction: ratio(c.tp + c.fn, n),
    pixels: n,
  };
}

/** Thresholds probabilities with the pipeline's strict `prob > threshold`. */
export function threshold(prob: ArrayLike<number>, thr: number): Uint8Array {
  const out = new Uint8Array(prob.length);
  for (let i = 0; i < prob.length; i++) out[i] = prob[i]! > thr ? 1 : 0;
  return out;
}

/** Scores rounded to 4 decimals, for manifests and tables (NaN becomes null in JSON). */
export function rounded(s: BinaryScores): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const [k, v] of Object.entries(s)) out[k] = Number.isNaN(v) ? null : k === 'pixels' ? v : Math.round(v * 1e4) / 1e4;
  return out;
}
