// `npm run build`: compiles the product code to dist/ (tsconfig.build.json) and stamps the build
// with the time it started, so bin/improve-cloud-mask.mjs can tell a build from stale sources.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const startedMs = Date.now();
rmSync('dist', { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
mkdirSync('dist', { recursive: true });
writeFileSync('dist/build-stamp.json', `${JSON.stringify({ startedMs })}\n`);
