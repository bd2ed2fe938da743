#!/usr/bin/env node
// Runs the compiled build (dist/, `npm run build`) when it is at least as new as every source
// file: it starts in half the time. Otherwise the TypeScript sources through tsx, so a clone
// needs no build step after `npm ci` and an edit is never hidden by an old build. The Docker
// image has dist/ and no tsx. ICM_RUN_SOURCES=1 always takes the sources (the tests do: they
// test the sources, not a build).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUILT = `${ROOT}dist/cli/bin.js`;
const STAMP = `${ROOT}dist/build-stamp.json`;
// The folders tsconfig.build.json compiles.
const SOURCE_DIRS = ['shared', 'coordinator', 'worker', 'raster', 'cli', 'transport', 'scripts/lib'];

/** True when no source file changed after the build started (a missing folder: nothing to compare). */
function buildIsCurrent() {
  if (process.env.ICM_RUN_SOURCES === '1') return false;
  if (!existsSync(BUILT) || !existsSync(STAMP)) return false;
  const { startedMs } = JSON.parse(readFileSync(STAMP, 'utf8'));
  for (const dir of SOURCE_DIRS) {
    const full = `${ROOT}${dir}`;
    if (!existsSync(full)) continue;
    for (const f of readdirSync(full, { recursive: true })) {
      if (/\.(ts|mjs)$/.test(f) && statSync(`${full}/${f}`).mtimeMs > startedMs) return false;
    }
  }
  return true;
}

async function tsxRegister() {
  try {
    return (await import('tsx/esm/api')).register;
  } catch {
    return null;
  }
}

const register = buildIsCurrent() || !existsSync(`${ROOT}cli/main.ts`) ? null : await tsxRegister();
if (register) {
  register();
  const { main } = await import('../cli/main.ts');
  process.exitCode = await main(process.argv.slice(2));
} else if (existsSync(BUILT)) {
  await import(new URL('../dist/cli/bin.js', import.meta.url).href);
} else {
  process.stderr.write('improve-cloud-mask: neither tsx (npm ci) nor a build (npm run build) is installed\n');
  process.exitCode = 1;
}
