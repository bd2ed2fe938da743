/** `improve-cloud-mask demo`: `run` on the real sample scene, outputs in --out-dir. */
import path from 'node:path';
import type { CliEnv } from './env.ts';
import type { Flags } from './options.ts';
import { runCommand } from './run-command.ts';

export async function demoCommand(flags: Flags, env: CliEnv, sample: string): Promise<number> {
  const outDir = (flags['out-dir'] as string | undefined) ?? path.join(env.packageRoot, 'out', 'demo');
  env.log(`demo: improve_cloud_mask on the real sample scene ${sample} (product mask from SCL), embedded mode`);
  const { 'out-dir': _outDir, ...runFlags } = flags;
  return runCommand(
    {
      ...runFlags,
      's2-raster': sample,
      'product-mask': 'scl',
      out: path.join(outDir, 'mask.tif'),
      classes: path.join(outDir, 'classes.tif'),
      quicklook: path.join(outDir, 'quicklook.png'),
    },
    env,
  );
}
