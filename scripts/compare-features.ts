/**
 * `npx tsx scripts/compare-features.ts [NAME ...]`: the feature sets docs/models.md compares for
 * the bundled models, each trained like them (same data, split, trainer and seed) and scored on
 * the held-out block and against SCL on s2-l2a-29RKH. Features here are in reflectance; the
 * shipped graph's log(DN + 1) differs from log(r + 1e-4) by a constant, which standardization
 * removes. About 10 s per feature set.
 */
import { boxMean, forwardLogits } from './lib/cheaplab.ts';
import { hardNegativePixels, loadSclScene, sclHeldOutPixels } from './lib/l2a-scene.ts';
import { confusion, scores } from './lib/metrics.ts';
import { DEFAULT_TRAIN_OPTIONS, trainCheapLab } from './lib/train-mlp.ts';
import { heldOutPixels, loadUkisScene, sharedDataDir, targets, trainingPixels } from './lib/ukis-data.ts';

type Planes = Float64Array[];
type FeatureSet = (reflectance: readonly ArrayLike<number>[], width: number, height: number) => Planes;

const asPlanes = (r: readonly ArrayLike<number>[]): Planes => r.map((b) => Float64Array.from(b));
const mean3 = (fs: Planes, w: number, h: number): Planes => fs.map((f) => boxMean(f, w, h, 1));
const logs = (r: Planes): Planes => r.map((b) => b.map((v) => Math.log(v + 1e-4)));
const PAIRS: [number, number][] = [];
for (let i = 0; i < 6; i++) for (let j = i + 1; j < 6; j++) PAIRS.push([i, j]);
const normDiffs = (r: Planes): Planes => PAIRS.map(([i, j]) => r[i]!.map((v, p) => (v - r[j]![p]!) / (v + r[j]![p]! + 1e-4)));

const SETS: Record<string, FeatureSet> = {
  previous42: (r, w, h) => { const base = [...asPlanes(r), ...normDiffs(asPlanes(r))]; return [...base, ...mean3(base, w, h)]; },
  meanLog6: (r, w, h) => mean3(logs(asPlanes(r)), w, h),
  meanRefl6: (r, w, h) => mean3(asPlanes(r), w, h),
  logAndMeanLog12: (r, w, h) => { const l = logs(asPlanes(r)); return [...l, ...mean3(l, w, h)]; },
  meanReflNd21: (r, w, h) => { const a = asPlanes(r); return mean3([...a, ...normDiffs(a)], w, h); },
  refl6NoContext: (r) => asPlanes(r),
};

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  const scene = await loadUkisScene();
  const l2a = await loadSclScene(sharedDataDir());
  const train = trainingPixels(scene);
  const held = heldOutPixels(scene);
  const all = Int32Array.from({ length: l2a.width * l2a.height }, (_, i) => i);
  for (const name of names.length ? names : Object.keys(SETS)) {
    const set = SETS[name];
    if (!set) throw new Error(`unknown feature set ${name}: one of ${Object.keys(SETS).join(', ')}`);
    const f = set(scene.reflectance, scene.width, scene.height);
    const fl = set(l2a.reflectance, l2a.width, l2a.height);
    const cols: string[] = [];
    for (const role of ['cloud', 'shadow'] as const) {
      const target = targets(scene, role);
      const desert = { features: fl, target: new Uint8Array(all.length), pixels: hardNegativePixels(l2a) };
      const { weights } = trainCheapLab([{ features: f, target, pixels: train }, ...(role === 'cloud' ? [desert] : [])], DEFAULT_TRAIN_OPTIONS);
      // Trained class-balanced: logit > 0 is the decision the shipped threshold shift reproduces.
      const pred = new Uint8Array(scene.width * scene.height);
      forwardLogits(weights, f, held).forEach((z, k) => { pred[held[k]!] = z > 0 ? 1 : 0; });
      const s = scores(confusion(pred, target, held));
      const onL2a = forwardLogits(weights, fl, all).map((z) => (z > 0 ? 1 : 0));
      const l2aScore = role === 'cloud'
        ? `SCL cloud recall (east) ${scores(confusion(onL2a, l2a.sclCloud, sclHeldOutPixels(l2a))).recall.toFixed(3)}`
        : `shadow on the L2A tile ${(100 * scores(confusion(onL2a, l2a.sclShadow, l2a.valid)).predictedFraction).toFixed(1)} %`;
      cols.push(`${role} bal. acc ${s.balancedAccuracy.toFixed(4)} IoU ${s.iou.toFixed(3)}, ${l2aScore}`);
    }
    console.log(`${name} (${f.length} features): ${cols.join('; ')}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
