/**
 * `npm run gen-fpn [-- --out DIR]`: writes the random-weight FPN/ResNet-18 benchmark models (and
 * their manifests) to .cache/models/, or DIR. Skips files that are already up to date.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { defaultFpnCacheDir, ensureFpnModels } from './lib/fpn.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const dir = path.resolve(values.out ?? defaultFpnCacheDir());
  const started = Date.now();
  const files = await ensureFpnModels(dir);
  const seconds = (Date.now() - started) / 1000;
  for (const [role, file] of Object.entries(files)) {
    console.log(`${role.padEnd(6)} ${file} (${((await stat(file)).size / 1e6).toFixed(1)} MB)`);
  }
  console.log(`ready in ${seconds.toFixed(1)} s. RANDOM WEIGHTS, for benchmarking cost only; use with --models-dir ${dir}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
