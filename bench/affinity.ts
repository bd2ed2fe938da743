/**
 * `npx tsx bench/affinity.ts [--factor 4] [--reps 1] [--runs embedded,1,2]`: the cluster part of the benchmark only,
 * for affinity (docs/performance.md): the bench scene embedded (2 threads), then `run --nats`
 * with 1 worker of 2 threads and 2 workers of 1 thread, each on a fresh nats-server, and the
 * source tiles each worker process decoded (`icm_worker_tile_decodes_total`). Counts, then
 * seconds (the machine may be shared: the seconds are only indicative).
 */
import { parseArgs } from 'node:util';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL } from '../shared/manifest.ts';
import { defaultModelsDir } from '../worker/models.ts';
import { runCluster, runEmbedded, type ModelSet, type RunResult } from './runners.ts';
import { ensureScene } from './scene.ts';

const log = (line: string): void => console.log(line);

function line(label: string, r: RunResult, base: number): string {
  const sum = r.breakdown.decodes.reduce((a, b) => a + b, 0);
  return `${label}: tiles decoded ${r.breakdown.decodes.join(' + ')} = ${sum} (${(sum / base).toFixed(2)} x embedded), ${r.seconds.toFixed(1)} s`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { factor: { type: 'string', default: '4' }, reps: { type: 'string', default: '1' }, runs: { type: 'string', default: 'embedded,1,2' } } });
  const runs = new Set(values.runs.split(','));
  const scene = await ensureScene(Number(values.factor), log);
  const models: ModelSet = { label: 'default', modelsDir: defaultModelsDir(), cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL, builtin: true };
  log(`scene ${scene.width}x${scene.height}, ${scene.chips} chips`);
  for (let rep = 1; rep <= Number(values.reps); rep++) {
    const embedded = runs.has('embedded') ? await runEmbedded(scene, models, 2) : null;
    // Without the embedded run there is nothing to compare with: the ratios print NaN.
    const base = embedded?.breakdown.decodes[0] ?? NaN;
    if (embedded) log(line(`[${rep}] embedded, 2 threads`, embedded, base));
    if (runs.has('1')) log(line(`[${rep}] cluster, 1 worker x 2 threads`, await runCluster(scene, models, 2, 1), base));
    if (runs.has('2')) log(line(`[${rep}] cluster, 2 workers x 1 thread`, await runCluster(scene, models, 2, 2), base));
  }
}

await main();
